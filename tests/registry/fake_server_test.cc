// Behaviour a real registry does not easily show, against Beast fake servers on 127.0.0.1:
// the Bearer token flow (docker-registry's token auth needs a cert-signed JWT issuer, so the
// fake registry issues the 401 challenge and checks the token itself), bodies cut mid-way
// and resumed with Range, redirects to another host dropping Authorization, status codes.
#include "tests/registry/fake_server.h"
#include "tests/registry/fake_registry.h"

#include <atomic>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/registry/test_util.h"
#include "unpack/registry_client.h"

namespace zsnap::unpack {
namespace {

using fake::Request;
using fake::Respond;
using fake::tcp;

using FakeServerTest = FakeRegistryTest;

TEST_F(FakeServerTest, BearerTokenFlowWithBasicCredentialsAndCache) {
  std::string realm;
  FakeServer server([&](const Request& req, tcp::socket& s) {
    std::string target(req.target());
    if (absl::StartsWith(target, "/token")) {
      if (Header(req, "Authorization") != BasicAuthorization({"bob", "pw"})) {
        return Respond(s, 401);
      }
      return Respond(s, 200, R"({"access_token":"tok-123","expires_in":300})");
    }
    if (Header(req, "Authorization") != "Bearer tok-123") {
      return Respond(s, 401, "",
                     {{"WWW-Authenticate",
                       absl::StrCat("Bearer realm=\"", realm,
                                    "\",service=\"fake reg\",scope=\"repository:repo:pull\"")}});
    }
    Respond(s, 200, blob_);
  });
  realm = server.url() + "/token";
  Reference ref = Ref(server);

  RegistryClient client(Options([](std::string_view) -> absl::StatusOr<Credentials> {
    return Credentials{"bob", "pw"};
  }));
  for (int i = 0; i < 2; ++i) {
    auto blob = client.GetBlob(ref, digest_);
    ASSERT_TRUE(blob.ok()) << blob.status();
    auto bytes = Drain(**blob);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    EXPECT_EQ(Sha256Of(*bytes), digest_);
  }
  EXPECT_EQ(server.count("/token"), 1u);  // cached per scope
  bool saw_token_query = false;
  for (const Request& r : server.requests()) {
    if (absl::StartsWith(std::string(r.target()), "/token")) {
      EXPECT_EQ(std::string(r.target()),
                "/token?service=fake%20reg&scope=repository%3Arepo%3Apull");
      saw_token_query = true;
    }
  }
  EXPECT_TRUE(saw_token_query);

  RegistryClient wrong(Options([](std::string_view) -> absl::StatusOr<Credentials> {
    return Credentials{"bob", "nope"};
  }));
  EXPECT_TRUE(absl::IsUnauthenticated(wrong.GetBlob(ref, digest_).status()));
}

TEST_F(FakeServerTest, CutBodyResumesWithRangeExactlyOnce) {
  std::atomic<int> gets{0};
  FakeServer server([&](const Request& req, tcp::socket& s) {
    int n = gets++;
    std::string range = Header(req, "Range");
    size_t offset = 0;
    if (!range.empty()) offset = std::stoul(range.substr(6));  // "bytes=N-"
    // First answer stops after 300000 bytes, the second after 200000 more; then all.
    size_t send = n == 0 ? 300000 : n == 1 ? 200000 : blob_.size();
    fake::RespondPartial(s, blob_, offset, send, !range.empty());
  });
  RegistryClient client(Options());
  auto blob = client.GetBlob(Ref(server), digest_, blob_.size());
  ASSERT_TRUE(blob.ok()) << blob.status();
  auto bytes = Drain(**blob);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(bytes->size(), blob_.size());
  EXPECT_EQ(Sha256Of(*bytes), digest_);
  auto requests = server.requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(Header(requests[0], "Range"), "");
  EXPECT_EQ(Header(requests[1], "Range"), "bytes=300000-");
  EXPECT_EQ(Header(requests[2], "Range"), "bytes=500000-");
}

TEST_F(FakeServerTest, StalledBodyTimesOutAndResumes) {
  std::atomic<int> gets{0};
  FakeServer server([&](const Request& req, tcp::socket& s) {
    std::string range = Header(req, "Range");
    if (gets++ == 0) {
      fake::RespondPartial(s, blob_, 0, 1000, false);
      // Stall with the connection open, longer than the client's I/O timeout.
      std::this_thread::sleep_for(std::chrono::milliseconds(800));
      return;
    }
    fake::RespondPartial(s, blob_, std::stoul(range.substr(6)), blob_.size(), true);
  });
  RegistryClientOptions options = Options();
  options.timeouts.io = std::chrono::milliseconds(200);
  RegistryClient client(options);
  auto blob = client.GetBlob(Ref(server), digest_);
  ASSERT_TRUE(blob.ok()) << blob.status();
  auto bytes = Drain(**blob);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(Sha256Of(*bytes), digest_);
  // The resume may itself time out while the server still stalls (it is single-threaded) and
  // be retried; every one of them asks for the rest only.
  auto requests = server.requests();
  ASSERT_GE(requests.size(), 2u);
  for (size_t i = 1; i < requests.size(); ++i)
    EXPECT_EQ(Header(requests[i], "Range"), "bytes=1000-");
}

TEST_F(FakeServerTest, ServerIgnoringRangeIsSkippedForward) {
  std::atomic<int> gets{0};
  FakeServer server([&](const Request&, tcp::socket& s) {
    fake::RespondPartial(s, blob_, 0, gets++ == 0 ? 123457 : blob_.size(), /*as_range=*/false);
  });
  RegistryClient client(Options());
  auto blob = client.GetBlob(Ref(server), digest_);
  ASSERT_TRUE(blob.ok()) << blob.status();
  auto bytes = Drain(**blob);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(Sha256Of(*bytes), digest_);
}

TEST_F(FakeServerTest, WrongContentRangeAndEndlessCutsFail) {
  std::atomic<int> gets{0};
  FakeServer bad_range([&](const Request&, tcp::socket& s) {
    if (gets++ == 0) return fake::RespondPartial(s, blob_, 0, 1000, false);
    fake::RespondPartial(s, blob_, 10, blob_.size(), /*as_range=*/true);  // not 1000-
  });
  RegistryClient client(Options());
  auto blob = client.GetBlob(Ref(bad_range), digest_);
  ASSERT_TRUE(blob.ok()) << blob.status();
  auto bytes = Drain(**blob);
  EXPECT_TRUE(absl::IsFailedPrecondition(bytes.status())) << bytes.status();

  FakeServer always_cut([&](const Request& req, tcp::socket& s) {
    std::string range = Header(req, "Range");
    fake::RespondPartial(s, blob_, range.empty() ? 0 : std::stoul(range.substr(6)),
                         range.empty() ? 5000 : 0, !range.empty());
  });
  blob = client.GetBlob(Ref(always_cut), digest_);
  ASSERT_TRUE(blob.ok()) << blob.status();
  bytes = Drain(**blob);
  EXPECT_TRUE(absl::IsUnavailable(bytes.status())) << bytes.status();
  EXPECT_LE(always_cut.requests().size(), 5u);  // 1 + max_attempts resumes
}

TEST_F(FakeServerTest, RedirectToOtherHostDropsAuthorization) {
  FakeServer storage([&](const Request&, tcp::socket& s) { Respond(s, 200, blob_); });
  FakeServer registry([&](const Request& req, tcp::socket& s) {
    if (Header(req, "Authorization").empty()) {
      return Respond(s, 401, "", {{"WWW-Authenticate", "Basic realm=\"r\""}});
    }
    std::string target(req.target());
    if (absl::StartsWith(target, "/v2/repo/blobs/")) {
      return Respond(s, 307, "", {{"Location", storage.url() + "/bucket/obj?X-Sig=abc"}});
    }
    if (target == "/v2/repo/manifests/v1") {  // same-host redirect keeps credentials
      return Respond(s, 302, "", {{"Location", "/v2/repo/manifests/real"}});
    }
    Respond(s, 404);
  });
  RegistryClient client(Options([](std::string_view) -> absl::StatusOr<Credentials> {
    return Credentials{"u", "p"};
  }));
  Reference ref = Ref(registry);
  auto blob = client.GetBlob(ref, digest_);
  ASSERT_TRUE(blob.ok()) << blob.status();
  auto bytes = Drain(**blob);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(Sha256Of(*bytes), digest_);
  ASSERT_EQ(storage.requests().size(), 1u);
  EXPECT_EQ(std::string(storage.requests()[0].target()), "/bucket/obj?X-Sig=abc");
  EXPECT_EQ(Header(storage.requests()[0], "Authorization"), "");
  EXPECT_EQ(Header(registry.requests().back(), "Authorization"), BasicAuthorization({"u", "p"}));

  EXPECT_TRUE(absl::IsNotFound(client.GetManifest(ref).status()));
  auto reqs = registry.requests();
  EXPECT_EQ(std::string(reqs.back().target()), "/v2/repo/manifests/real");
  EXPECT_EQ(Header(reqs.back(), "Authorization"), BasicAuthorization({"u", "p"}));
}

TEST_F(FakeServerTest, StatusCodesAndRetries) {
  std::atomic<int> hits{0};
  FakeServer server([&](const Request& req, tcp::socket& s) {
    std::string target(req.target());
    if (absl::StrContains(target, "forbidden")) return Respond(s, 403);
    if (absl::StrContains(target, "always401")) {
      return Respond(s, 401, "", {{"WWW-Authenticate", "Basic realm=\"r\""}});
    }
    if (absl::StrContains(target, "down")) return Respond(s, 503);
    if (absl::StrContains(target, "flaky") && hits++ == 0) return Respond(s, 502);
    Respond(s, 200, blob_);
  });
  auto creds = [](std::string_view) -> absl::StatusOr<Credentials> {
    return Credentials{"u", "p"};
  };
  RegistryClient client(Options(creds));
  Ref(server);
  auto ref = [&](const char* repo) { return *ParseReference(server.authority() + repo); };
  EXPECT_TRUE(absl::IsPermissionDenied(client.GetBlob(ref("/forbidden"), digest_).status()));
  EXPECT_TRUE(absl::IsUnauthenticated(client.GetBlob(ref("/always401"), digest_).status()));
  auto down = client.GetBlob(ref("/down"), digest_);
  EXPECT_TRUE(absl::IsUnavailable(down.status())) << down.status();
  EXPECT_EQ(server.count("/v2/down/"), 3u);  // max_attempts
  auto flaky = client.GetBlob(ref("/flaky"), digest_);
  ASSERT_TRUE(flaky.ok()) << flaky.status();
  EXPECT_EQ(Sha256Of(*Drain(**flaky)), digest_);
  EXPECT_TRUE(absl::IsInvalidArgument(client.GetBlob(ref("/x"), "sha256:zz").status()));
}

TEST_F(FakeServerTest, ManifestDigestIsVerifiedAndSizesBounded) {
  std::string manifest =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
      R"("config":{"mediaType":"c","digest":")" +
      digest_ + R"(","size":3},"layers":[]})";
  FakeServer server([&](const Request& req, tcp::socket& s) {
    if (absl::StrContains(std::string(req.target()), "/blobs/")) return Respond(s, 200, blob_);
    Respond(s, 200, manifest, {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}});
  });
  RegistryClient client(Options());
  Reference by_tag = Ref(server);
  auto m = client.GetManifest(by_tag);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->digest, Sha256Of(manifest));
  EXPECT_EQ(m->config.size, 3u);

  Reference by_digest = Ref(server, "/repo@" + Sha256Of("something else"));
  EXPECT_TRUE(absl::IsDataLoss(client.GetManifest(by_digest).status()));
  // A descriptor size that disagrees with the server's length.
  EXPECT_TRUE(absl::IsDataLoss(client.GetBlob(by_tag, digest_, 10).status()));
  EXPECT_TRUE(absl::IsResourceExhausted(client.FetchBlobToString(by_tag, digest_, 1000).status()));
}

// A blob body arrives in the pieces the socket has, not in pieces the size of the client's
// header buffer: Beast sizes each socket read by its buffer's spare capacity (512 bytes
// after the headers), which made a 400 MB layer cost ~800k recv + 1.6M epoll_wait calls.
TEST_F(FakeServerTest, BodyIsReadInLargePieces) {
  FakeServer server([&](const Request&, tcp::socket& s) { Respond(s, 200, blob_); });
  RegistryClient client(Options());
  auto blob = client.GetBlob(Ref(server), digest_, blob_.size());
  ASSERT_TRUE(blob.ok()) << blob.status();
  std::string buf(1 << 20, '\0');
  std::string got;
  int reads = 0;
  for (;;) {
    auto n = (*blob)->Read(std::span<std::byte>(reinterpret_cast<std::byte*>(buf.data()), buf.size()));
    ASSERT_TRUE(n.ok()) << n.status();
    if (*n == 0) break;
    ++reads;
    got.append(buf.data(), *n);
  }
  EXPECT_EQ(Sha256Of(got), digest_);
  // 1 MiB: 16 reads of 64 KiB when the sender keeps ahead; the loopback socket hands over
  // whole segments, so even a reader that keeps overtaking the sender stays far below the
  // 2048 reads of 512 bytes.
  EXPECT_LT(reads, 256) << "average read " << got.size() / reads << " bytes";
}

}  // namespace
}  // namespace zsnap::unpack
