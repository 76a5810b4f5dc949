// Pulls from a real docker-registry on 127.0.0.1: plain HTTP, TLS with a private CA from
// hosts.toml, htpasswd basic auth, a dead mirror before the server, 404s. Images are pushed
// by the test itself through the Registry API with zsnap's HttpClient.
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/registry/docker_registry.h"
#include "tests/registry/test_util.h"
#include "unpack/registry_client.h"

namespace zsnap::unpack {
namespace {

using json = nlohmann::json;

constexpr char kOciManifest[] = "application/vnd.oci.image.manifest.v1+json";
constexpr char kOciIndex[] = "application/vnd.oci.image.index.v1+json";
constexpr char kDockerManifest[] = "application/vnd.docker.distribution.manifest.v2+json";
constexpr char kDockerList[] = "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr char kGzipLayer[] = "application/vnd.oci.image.layer.v1.tar+gzip";

struct PushedImage {
  std::string config, layer1, layer2;  // bytes
  std::string manifest_digest, index_digest, arm_manifest_digest;
};

// Pushes a two-platform image (amd64 with two layers, arm64/v8 with one) as `repo:tag`.
PushedImage PushImage(Pusher& pusher, const std::string& repo, const std::string& tag,
                      bool docker_types) {
  PushedImage img;
  img.config = R"({"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}})";
  img.layer1 = RandomBytes(3 << 20, 1);  // bigger than any single read
  img.layer2 = RandomBytes(1234, 2);
  std::string arm_config = R"({"architecture":"arm64","os":"linux"})";
  auto desc = [&](const char* type, const std::string& bytes) {
    return json{
        {"mediaType", type}, {"digest", pusher.PushBlob(repo, bytes)}, {"size", bytes.size()}};
  };
  const char* manifest_type = docker_types ? kDockerManifest : kOciManifest;
  const char* config_type = docker_types ? "application/vnd.docker.container.image.v1+json"
                                         : "application/vnd.oci.image.config.v1+json";
  json amd = {{"schemaVersion", 2},
              {"mediaType", manifest_type},
              {"config", desc(config_type, img.config)},
              {"layers", {desc(kGzipLayer, img.layer1), desc(kGzipLayer, img.layer2)}}};
  amd["layers"][1]["annotations"] = {{"org.example", "v"}};
  json arm = {{"schemaVersion", 2},
              {"mediaType", manifest_type},
              {"config", desc(config_type, arm_config)},
              {"layers", {desc(kGzipLayer, img.layer2)}}};
  std::string amd_bytes = amd.dump(), arm_bytes = arm.dump();
  img.manifest_digest = Sha256Of(amd_bytes);
  img.arm_manifest_digest = Sha256Of(arm_bytes);
  pusher.PushManifest(repo, img.manifest_digest, manifest_type, amd_bytes);
  pusher.PushManifest(repo, img.arm_manifest_digest, manifest_type, arm_bytes);
  const char* index_type = docker_types ? kDockerList : kOciIndex;
  json index = {{"schemaVersion", 2},
                {"mediaType", index_type},
                {"manifests",
                 {{{"mediaType", manifest_type},
                   {"digest", img.arm_manifest_digest},
                   {"size", arm_bytes.size()},
                   {"platform", {{"os", "linux"}, {"architecture", "arm64"}, {"variant", "v8"}}}},
                  {{"mediaType", manifest_type},
                   {"digest", img.manifest_digest},
                   {"size", amd_bytes.size()},
                   {"platform", {{"os", "linux"}, {"architecture", "amd64"}}}}}}};
  img.index_digest = pusher.PushManifest(repo, tag, index_type, index.dump());
  return img;
}

class LiveRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(kRegistryBinary, X_OK) != 0) GTEST_SKIP() << "no " << kRegistryBinary;
  }

  // hosts.toml for `registry` in certs_ (the client's config dir).
  void WriteHostsToml(const std::string& registry, const std::string& content) {
    std::filesystem::create_directories(certs_.path() + "/" + registry);
    WriteFile(certs_.path() + "/" + registry + "/hosts.toml", content);
  }

  RegistryClientOptions ClientOptions(CredentialsLookup creds = nullptr) {
    RegistryClientOptions o;
    o.hosts.config_dir = certs_.path();
    o.credentials = std::move(creds);
    o.retry = {.max_attempts = 2,
               .initial_backoff = std::chrono::milliseconds(10),
               .max_backoff = std::chrono::milliseconds(50)};
    o.timeouts = {std::chrono::milliseconds(5000), std::chrono::milliseconds(10000)};
    return o;
  }

  void ExpectPullWorks(RegistryClient& client, const std::string& registry,
                       const PushedImage& img) {
    auto ref = ParseReference(registry + "/team/app:v1");
    ASSERT_TRUE(ref.ok()) << ref.status();
    auto m = client.GetManifest(*ref);
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->digest, img.manifest_digest);
    EXPECT_EQ(m->index_digest, img.index_digest);
    EXPECT_EQ(Sha256Of(m->bytes), m->digest);
    ASSERT_EQ(m->layers.size(), 2u);
    EXPECT_EQ(m->layers[0].digest, Sha256Of(img.layer1));
    EXPECT_EQ(m->layers[0].size, img.layer1.size());
    EXPECT_EQ(m->layers[1].annotations.at("org.example"), "v");
    auto config = client.FetchBlobToString(*ref, m->config.digest);
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_EQ(*config, img.config);
    auto blob = client.GetBlob(*ref, m->layers[0].digest, m->layers[0].size);
    ASSERT_TRUE(blob.ok()) << blob.status();
    auto bytes = Drain(**blob, 65536);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    EXPECT_EQ(Sha256Of(*bytes), m->layers[0].digest);
  }

  TempDir certs_;
  TempDir work_;
};

TEST_F(LiveRegistryTest, PlainHttpIndexToPlatformManifestAndBlobs) {
  DockerRegistry registry;
  ASSERT_TRUE(registry.Start({}));
  Pusher pusher(registry.url(), {});
  PushedImage oci = PushImage(pusher, "team/app", "v1", /*docker_types=*/false);
  PushedImage docker = PushImage(pusher, "team/app", "docker", /*docker_types=*/true);
  WriteHostsToml(registry.authority(), absl::StrCat("server = \"", registry.url(), "\"\n"));

  RegistryClient client(ClientOptions());
  ExpectPullWorks(client, registry.authority(), oci);

  // Another platform, the Docker media types, and a pull by digest.
  auto ref = *ParseReference(registry.authority() + "/team/app:docker");
  auto arm = client.GetManifest(ref, {.os = "linux", .architecture = "arm64", .variant = "v8"});
  ASSERT_TRUE(arm.ok()) << arm.status();
  EXPECT_EQ(arm->digest, docker.arm_manifest_digest);
  EXPECT_EQ(arm->media_type, kDockerManifest);
  auto amd = client.GetManifest(ref);
  ASSERT_TRUE(amd.ok()) << amd.status();
  EXPECT_EQ(amd->digest, docker.manifest_digest);
  auto by_digest = client.GetManifest(
      *ParseReference(registry.authority() + "/team/app@" + oci.manifest_digest));
  ASSERT_TRUE(by_digest.ok()) << by_digest.status();
  EXPECT_EQ(by_digest->media_type, kOciManifest);
  EXPECT_EQ(by_digest->index_digest, "");
  EXPECT_TRUE(absl::IsNotFound(
      client.GetManifest(ref, {.os = "windows", .architecture = "amd64"}).status()));
}

TEST_F(LiveRegistryTest, NotFoundCodes) {
  DockerRegistry registry;
  ASSERT_TRUE(registry.Start({}));
  Pusher pusher(registry.url(), {});
  PushImage(pusher, "team/app", "v1", false);
  WriteHostsToml(registry.authority(), absl::StrCat("server = \"", registry.url(), "\"\n"));
  RegistryClient client(ClientOptions());
  auto ref = *ParseReference(registry.authority() + "/team/app:nope");
  EXPECT_TRUE(absl::IsNotFound(client.GetManifest(ref).status()));
  auto missing = *ParseReference(registry.authority() + "/team/other:v1");
  EXPECT_TRUE(absl::IsNotFound(client.GetManifest(missing).status()));
  auto blob = client.GetBlob(ref, Sha256Of("never pushed"));
  EXPECT_TRUE(absl::IsNotFound(blob.status())) << blob.status();
}

TEST_F(LiveRegistryTest, TlsWithPrivateCaFromHostsToml) {
  TestCa ca;
  ASSERT_TRUE(MakeTestCa(work_.path(), ca)) << "openssl failed, see " << work_.path();
  DockerRegistry registry;
  ASSERT_TRUE(registry.Start({.tls_cert = ca.server_pem, .tls_key = ca.server_key}));
  Pusher pusher(registry.url(), {.ca_files = {ca.ca_pem}});
  PushedImage img = PushImage(pusher, "team/app", "v1", false);
  auto ref = *ParseReference(registry.authority() + "/team/app:v1");

  {  // Default https, system CAs only: the private CA is not trusted.
    RegistryClient client(ClientOptions());
    auto m = client.GetManifest(ref);
    EXPECT_TRUE(absl::IsUnavailable(m.status())) << m.status();
    EXPECT_NE(m.status().message().find("TLS handshake"), std::string::npos) << m.status();
  }
  {  // The CA from hosts.toml, relative to the host's directory.
    std::filesystem::copy_file(ca.ca_pem, certs_.path() + "/ca-copy.pem");
    WriteHostsToml(registry.authority(), "ca = \"../ca-copy.pem\"\n");
    RegistryClient client(ClientOptions());
    ExpectPullWorks(client, registry.authority(), img);
  }
  {  // skip_verify instead.
    WriteHostsToml(registry.authority(), "skip_verify = true\n");
    RegistryClient client(ClientOptions());
    EXPECT_TRUE(client.GetManifest(ref).ok());
  }
}

TEST_F(LiveRegistryTest, BasicAuthWithHtpasswd) {
  std::string hash = BcryptHash("s3cret");
  ASSERT_FALSE(hash.empty()) << "libcrypt has no bcrypt";
  std::string htpasswd = work_.path() + "/htpasswd";
  WriteFile(htpasswd, "alice:" + hash + "\n");
  DockerRegistry registry;
  ASSERT_TRUE(registry.Start({.htpasswd = htpasswd}));
  Pusher pusher(registry.url(), {}, BasicAuthorization({"alice", "s3cret"}));
  PushedImage img = PushImage(pusher, "team/app", "v1", false);
  WriteHostsToml(registry.authority(), absl::StrCat("server = \"", registry.url(), "\"\n"));
  auto ref = *ParseReference(registry.authority() + "/team/app:v1");

  int lookups = 0;
  RegistryClient good(ClientOptions([&](std::string_view host) -> absl::StatusOr<Credentials> {
    ++lookups;
    EXPECT_EQ(host, registry.authority());
    return Credentials{"alice", "s3cret"};
  }));
  ExpectPullWorks(good, registry.authority(), img);
  EXPECT_EQ(lookups, 1);  // the Basic header is cached for the host

  RegistryClient anonymous(ClientOptions());
  auto m = anonymous.GetManifest(ref);
  EXPECT_TRUE(absl::IsUnauthenticated(m.status())) << m.status();

  RegistryClient wrong(ClientOptions([](std::string_view) -> absl::StatusOr<Credentials> {
    return Credentials{"alice", "wrong"};
  }));
  m = wrong.GetManifest(ref);
  EXPECT_TRUE(absl::IsUnauthenticated(m.status())) << m.status();
  auto blob = wrong.GetBlob(ref, Sha256Of(img.layer1));
  EXPECT_TRUE(absl::IsUnauthenticated(blob.status())) << blob.status();
}

TEST_F(LiveRegistryTest, DeadAndEmptyMirrorsFallBackToServer) {
  DockerRegistry registry, empty_mirror;
  ASSERT_TRUE(registry.Start({}));
  ASSERT_TRUE(empty_mirror.Start({}));
  Pusher pusher(registry.url(), {});
  PushedImage img = PushImage(pusher, "team/app", "v1", false);
  uint16_t dead = PickFreePort();  // nothing listens: connection refused
  WriteHostsToml(
      registry.authority(),
      absl::StrCat("server = \"", registry.url(), "\"\n[host.\"http://127.0.0.1:", dead,
                   "\"]\n  capabilities = [\"pull\", \"resolve\"]\n[host.\"", empty_mirror.url(),
                   "\"]\n  capabilities = [\"pull\", \"resolve\"]\n"));
  RegistryClient client(ClientOptions());
  auto start = std::chrono::steady_clock::now();
  ExpectPullWorks(client, registry.authority(), img);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));

  // With the server gone too, the answer is Unavailable (not the mirror's 404).
  registry.Stop();
  auto m = client.GetManifest(*ParseReference(registry.authority() + "/team/app:v1"));
  EXPECT_TRUE(absl::IsUnavailable(m.status())) << m.status();
}

}  // namespace
}  // namespace zsnap::unpack
