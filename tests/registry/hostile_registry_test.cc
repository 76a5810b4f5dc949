// A misbehaving registry, served by FakeServer on 127.0.0.1: wrong JSON types in manifests,
// indexes and error bodies, oversized documents. Every case must end in a clear Status (no
// exception, no crash) within bounded memory.
#include <atomic>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/registry/fake_registry.h"
#include "tests/registry/fake_server.h"
#include "unpack/registry_client.h"

namespace zsnap::unpack {
namespace {

using fake::Request;
using fake::Respond;
using fake::tcp;

using HostileRegistryTest = FakeRegistryTest;

constexpr char kOciManifestType[] = "application/vnd.oci.image.manifest.v1+json";

// Error bodies whose fields have unexpected types threw nlohmann::type_error out of
// ErrorDetail and killed the daemon.
TEST_F(HostileRegistryTest, ErrorBodiesOfAnyShapeBecomeStatuses) {
  const std::vector<std::string> bodies = {
      R"({"errors":[{"code":1}]})",
      R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":null}]})",
      R"({"errors":[{"code":["x"],"message":{"a":1}}]})",
      R"({"errors":"nope"})",
      R"({"errors":[3, null, "x"]})",
      R"([1,2,3])",
      R"("just a string")",
      R"(not json at all)",
      std::string(100000, '['),
  };
  std::atomic<size_t> next{0};
  FakeServer server([&](const Request&, tcp::socket& s) {
    Respond(s, 404, bodies[next % bodies.size()], {{"Content-Type", "application/json"}});
  });
  RegistryClient client(Options());
  Reference ref = Ref(server);
  for (size_t i = 0; i < bodies.size(); ++i) {
    next = i;
    absl::Status s = client.GetBlob(ref, digest_).status();
    EXPECT_TRUE(absl::IsNotFound(s)) << i << ": " << s;
  }
}

TEST_F(HostileRegistryTest, ErrorMessagesAreTruncatedAndEscaped) {
  const std::string message = "line\r\nInjected: yes\x1b[31m" + std::string(10000, 'm');
  FakeServer server([&](const Request&, tcp::socket& s) {
    Respond(s, 404,
            absl::StrCat(R"({"errors":[{"code":"BLOB_UNKNOWN","message":")",
                         "line\\r\\nInjected: yes\\u001b[31m", std::string(3000, 'm'), "\"}]}"));
  });
  RegistryClient client(Options());
  absl::Status s = client.GetBlob(Ref(server), digest_).status();
  ASSERT_TRUE(absl::IsNotFound(s)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "blob unknown: line\\r\\nInjected")) << s;
  EXPECT_FALSE(absl::StrContains(s.message(), "\n"));
  EXPECT_FALSE(absl::StrContains(s.message(), "\x1b"));
  EXPECT_LT(s.message().size(), 1000u);
}

// Manifests and indexes with wrong field types are InvalidArgument; "mediaType": null is
// empty, as in containerd (Go's encoding/json leaves a null field at its zero value).
TEST_F(HostileRegistryTest, ManifestFieldTypesAreChecked) {
  const std::string config =
      absl::StrCat(R"({"mediaType":"c","digest":")", digest_, R"(","size":3})");
  auto manifest = [&](const std::string& fields) {
    return absl::StrCat(R"({"schemaVersion":2,)", fields, "}");
  };
  const std::vector<std::string> invalid = {
      manifest(absl::StrCat(R"("config":{"digest":")", digest_, R"(","size":"12"},"layers":[])")),
      manifest(absl::StrCat(R"("config":)", config, R"(,"layers":{})")),
      manifest(absl::StrCat(R"("config":)", config, R"(,"layers":[{"digest":1,"size":1}])")),
      manifest(absl::StrCat(R"("config":)", config, R"(,"layers":[],"mediaType":7)")),
      manifest(absl::StrCat(R"("config":[],"layers":[])")),
      manifest(absl::StrCat(R"("config":)", config, R"(,"layers":[3])")),
      manifest(absl::StrCat(R"("config":{"digest":")", digest_,
                            R"(","size":1,"urls":"x"},"layers":[])")),
      manifest(absl::StrCat(R"("config":{"digest":")", digest_,
                            R"(","size":1,"annotations":{"a":1}},"layers":[])")),
      manifest(absl::StrCat(R"("config":{"digest":")", digest_, R"(","size":-1},"layers":[])")),
      manifest(absl::StrCat(R"("config":{"digest":")", digest_, R"(","size":1.5},"layers":[])")),
      R"({"schemaVersion":"2","mediaType":"application/vnd.oci.image.manifest.v1+json"})",
      R"({"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"platform":3}]})",
      R"({"mediaType":"application/vnd.oci.image.index.v1+json","manifests":{}})",
      R"({"manifests":[{"digest":"sha256:)" + std::string(64, 'a') +
          R"(","size":1,"platform":{"os":1,"architecture":"amd64"}}]})",
      "[]",
      std::string(200000, '[') + std::string(200000, ']'),
  };
  std::atomic<size_t> next{0};
  std::string body;
  FakeServer server([&](const Request&, tcp::socket& s) {
    Respond(s, 200, body, {{"Content-Type", kOciManifestType}});
  });
  RegistryClient client(Options());
  Reference ref = Ref(server);
  for (size_t i = 0; i < invalid.size(); ++i) {
    body = invalid[i];
    absl::Status s = client.GetManifest(ref).status();
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << i << ": " << s;
  }
  // null is "absent": no mediaType falls back to the Content-Type.
  body = manifest(absl::StrCat(R"("mediaType":null,"config":{"mediaType":null,"digest":")",
                               digest_, R"(","size":3,"urls":null,"annotations":null},)",
                               R"("layers":[])"));
  absl::StatusOr<Manifest> m = client.GetManifest(ref);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->media_type, kOciManifestType);
  EXPECT_EQ(m->config.media_type, "");
  EXPECT_EQ(m->config.size, 3u);
}

// containerd remotes/docker/resolver.go rejects manifests above MaxManifestSize.
TEST_F(HostileRegistryTest, OversizedManifestIsRefused) {
  const std::string huge = R"({"schemaVersion":2,"x":")" + std::string(kMaxManifestBytes, 'a') +
                           "\"}";
  FakeServer server([&](const Request&, tcp::socket& s) {
    Respond(s, 200, huge, {{"Content-Type", kOciManifestType}});
  });
  RegistryClient client(Options());
  absl::Status s = client.GetManifest(Ref(server)).status();
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
}

}  // namespace
}  // namespace zsnap::unpack
