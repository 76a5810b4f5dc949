// `zsnap pull` / `zsnap rmi` and the CRI client against an in-process fake
// runtime.v1.ImageService on a unix socket: what arrives at the runtime, what is printed,
// how the runtime's errors surface, and bad usage.
#include "plugin/pull_command.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "cri/runtime/v1/api.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "plugin/cli.h"
#include "plugin/cri_client.h"
#include "plugin/server.h"
#include "tests/plugin/test_util.h"

namespace zsnap::plugin {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kImageId[] =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

// Records every request; answers with image_ref_ / image_ or with the configured error.
class FakeImageService final : public runtime::v1::ImageService::Service {
 public:
  grpc::Status PullImage(grpc::ServerContext*, const runtime::v1::PullImageRequest* req,
                         runtime::v1::PullImageResponse* resp) override {
    absl::MutexLock lock(&mu_);
    pulls_.push_back(*req);
    if (!error_.ok()) return error_;
    resp->set_image_ref(image_ref_);
    return grpc::Status::OK;
  }
  grpc::Status ImageStatus(grpc::ServerContext*, const runtime::v1::ImageStatusRequest* req,
                           runtime::v1::ImageStatusResponse* resp) override {
    absl::MutexLock lock(&mu_);
    if (!error_.ok()) return error_;
    if (req->image().image() == present_) {
      runtime::v1::Image* image = resp->mutable_image();
      image->set_id(kImageId);
      image->add_repo_tags(present_);
      image->add_repo_digests("127.0.0.1:5000/app@sha256:aa");
      image->set_size(12345);
    }
    return grpc::Status::OK;
  }
  grpc::Status RemoveImage(grpc::ServerContext*, const runtime::v1::RemoveImageRequest* req,
                           runtime::v1::RemoveImageResponse*) override {
    absl::MutexLock lock(&mu_);
    removes_.push_back(req->image().image());
    return error_;
  }

  void SetError(grpc::Status error) {
    absl::MutexLock lock(&mu_);
    error_ = std::move(error);
  }
  void SetPresent(std::string image) {
    absl::MutexLock lock(&mu_);
    present_ = std::move(image);
  }
  std::vector<runtime::v1::PullImageRequest> pulls() {
    absl::MutexLock lock(&mu_);
    return pulls_;
  }
  std::vector<std::string> removes() {
    absl::MutexLock lock(&mu_);
    return removes_;
  }

 private:
  absl::Mutex mu_;
  grpc::Status error_ ABSL_GUARDED_BY(mu_);
  std::string image_ref_ ABSL_GUARDED_BY(mu_) = kImageId;
  std::string present_ ABSL_GUARDED_BY(mu_);
  std::vector<runtime::v1::PullImageRequest> pulls_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> removes_ ABSL_GUARDED_BY(mu_);
};

// A PullImage that answers only when released (or after 30 s): a runtime that is slow.
class StuckImageService final : public runtime::v1::ImageService::Service {
 public:
  grpc::Status PullImage(grpc::ServerContext*, const runtime::v1::PullImageRequest*,
                         runtime::v1::PullImageResponse* resp) override {
    release_.WaitForNotificationWithTimeout(absl::Seconds(30));
    resp->set_image_ref(kImageId);
    return grpc::Status::OK;
  }
  void Release() { release_.Notify(); }

 private:
  absl::Notification release_;
};

// No handlers: every RPC answers UNIMPLEMENTED, like a runtime without the CRI plugin.
class EmptyImageService final : public runtime::v1::ImageService::Service {};

using Result = testing::CliResult;
using testing::RunZsnap;

class PullCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    socket_ = dir_.Sub("cri.sock");
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(socket_, service_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  testing::TempDir dir_;
  std::string socket_;
  FakeImageService service_;
  std::unique_ptr<Server> server_;
};

TEST(CriTargetTest, PathsAndUnixUrls) {
  EXPECT_EQ(*CriTarget("/run/containerd/containerd.sock"),
            "unix:///run/containerd/containerd.sock");
  EXPECT_EQ(*CriTarget("unix:///run/containerd/containerd.sock"),
            "unix:///run/containerd/containerd.sock");
  for (const char* bad : {"", "containerd.sock", "unix://run/c.sock", "unix://", "tcp://1.2.3.4:5",
                          "npipe:////./pipe/containerd"}) {
    absl::StatusOr<std::string> target = CriTarget(bad);
    EXPECT_EQ(target.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_THAT(CriTarget("tcp://1.2.3.4:5").status().message(), HasSubstr("only unix sockets"));
}

TEST(PullArgsTest, Creds) {
  absl::StatusOr<CriAuth> auth = ParseCreds("alice:s3cret");
  ASSERT_TRUE(auth.ok());
  EXPECT_EQ(auth->username, "alice");
  EXPECT_EQ(auth->password, "s3cret");
  auth = ParseCreds("bob:pa:ss:");
  ASSERT_TRUE(auth.ok());
  EXPECT_EQ(auth->username, "bob");
  EXPECT_EQ(auth->password, "pa:ss:");
  EXPECT_EQ(ParseCreds("carol:")->password, "");
  EXPECT_EQ(ParseCreds("nocolon").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseCreds(":pass").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PullArgsTest, Timeout) {
  EXPECT_EQ(*ParseTimeout("90s"), absl::Seconds(90));
  EXPECT_EQ(*ParseTimeout("1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParseTimeout("0"), absl::InfiniteDuration());
  for (const char* bad : {"", "10", "-1s", "soon", "5 m"}) {
    EXPECT_EQ(ParseTimeout(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(PullResultTest, TextAndJson) {
  const PullResult r{.image = "127.0.0.1:5000/app:v1", .image_ref = kImageId, .wall_s = 1.23456};
  EXPECT_EQ(FormatPullResult(r), absl::StrCat("image      127.0.0.1:5000/app:v1\n", "image_ref  ",
                                              kImageId, "\n", "wall       1.235 s\n"));
  const nlohmann::json j = ToJson(r);
  EXPECT_EQ(j.at("image"), "127.0.0.1:5000/app:v1");
  EXPECT_EQ(j.at("image_ref"), kImageId);
  EXPECT_DOUBLE_EQ(j.at("wall_s").get<double>(), 1.23456);
  EXPECT_EQ(j.size(), 3u);
}

TEST_F(PullCommandTest, ClientSendsImageAndAuth) {
  absl::StatusOr<std::unique_ptr<CriClient>> client = CriClient::Connect(socket_);
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<std::string> ref =
      (*client)->PullImage("127.0.0.1:5000/app:v1", CriAuth{"alice", "s3:cret"}, absl::Seconds(10));
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(*ref, kImageId);
  ref = (*client)->PullImage("127.0.0.1:5000/app:v2", std::nullopt, absl::InfiniteDuration());
  ASSERT_TRUE(ref.ok()) << ref.status();
  // A silly long timeout is no deadline, not a clock overflow.
  ref = (*client)->PullImage("127.0.0.1:5000/app:v3", std::nullopt, absl::Hours(24 * 365 * 10000));
  ASSERT_TRUE(ref.ok()) << ref.status();

  const std::vector<runtime::v1::PullImageRequest> pulls = service_.pulls();
  ASSERT_EQ(pulls.size(), 3u);
  EXPECT_EQ(pulls[0].image().image(), "127.0.0.1:5000/app:v1");
  ASSERT_TRUE(pulls[0].has_auth());
  EXPECT_EQ(pulls[0].auth().username(), "alice");
  EXPECT_EQ(pulls[0].auth().password(), "s3:cret");
  EXPECT_EQ(pulls[0].auth().auth(), "");
  EXPECT_FALSE(pulls[0].has_sandbox_config());
  EXPECT_EQ(pulls[1].image().image(), "127.0.0.1:5000/app:v2");
  EXPECT_FALSE(pulls[1].has_auth());
}

TEST_F(PullCommandTest, ClientImageStatusAndRemove) {
  service_.SetPresent("app:v1");
  absl::StatusOr<std::unique_ptr<CriClient>> client = CriClient::Connect("unix://" + socket_);
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<std::optional<CriImage>> status =
      (*client)->ImageStatus("app:v1", absl::Seconds(10));
  ASSERT_TRUE(status.ok()) << status.status();
  ASSERT_TRUE(status->has_value());
  EXPECT_EQ((*status)->id, kImageId);
  EXPECT_THAT((*status)->repo_tags, ::testing::ElementsAre("app:v1"));
  EXPECT_THAT((*status)->repo_digests, ::testing::ElementsAre("127.0.0.1:5000/app@sha256:aa"));
  EXPECT_EQ((*status)->size, 12345u);
  status = (*client)->ImageStatus("app:v2", absl::Seconds(10));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_FALSE(status->has_value());

  EXPECT_TRUE((*client)->RemoveImage("app:v1", absl::Seconds(10)).ok());
  EXPECT_THAT(service_.removes(), ::testing::ElementsAre("app:v1"));
}

TEST_F(PullCommandTest, PullPrintsImageRefAndWallTime) {
  Result r = RunZsnap({"pull", "--cri-endpoint", socket_, "127.0.0.1:5000/app:v1"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_THAT(r.out, HasSubstr("image      127.0.0.1:5000/app:v1\n"));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("image_ref  ", kImageId, "\n")));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("\nwall       [0-9]+\\.[0-9]{3} s\n$"));
  ASSERT_EQ(service_.pulls().size(), 1u);
  EXPECT_FALSE(service_.pulls()[0].has_auth());
}

TEST_F(PullCommandTest, PullJsonWithCredsAndUnixUrl) {
  Result r = RunZsnap({"pull", "--json", "--creds", "alice:s3cret", "--timeout=30s",
                       "--cri-endpoint=unix://" + socket_, "127.0.0.1:5000/app:v1"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  ASSERT_EQ(r.out.back(), '\n');
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("image"), "127.0.0.1:5000/app:v1");
  EXPECT_EQ(j.at("image_ref"), kImageId);
  EXPECT_GE(j.at("wall_s").get<double>(), 0.0);
  const std::vector<runtime::v1::PullImageRequest> pulls = service_.pulls();
  ASSERT_EQ(pulls.size(), 1u);
  EXPECT_EQ(pulls[0].auth().username(), "alice");
  EXPECT_EQ(pulls[0].auth().password(), "s3cret");
  // The password never reaches the output.
  EXPECT_THAT(r.out, Not(HasSubstr("s3cret")));
}

TEST_F(PullCommandTest, RuntimeErrorsKeepCodeAndMessage) {
  const std::string missing = "127.0.0.1:5000/app:missing";
  const std::string containerd_text = "failed to pull and unpack image \"" + missing +
                                      "\": failed to resolve reference \"" + missing +
                                      "\": " + missing + ": not found";
  service_.SetError(grpc::Status(grpc::StatusCode::NOT_FOUND, containerd_text));
  Result r = RunZsnap({"pull", "--cri-endpoint", socket_, missing});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, absl::StrCat("zsnap pull: PullImage ", missing, " on ", socket_, ": ",
                                containerd_text, "\n"));

  PullArgs args{.endpoint = socket_, .image = missing};
  EXPECT_EQ(RunPull(args).status().code(), absl::StatusCode::kNotFound);

  service_.SetError(grpc::Status(grpc::StatusCode::UNAVAILABLE, "registry is overloaded"));
  EXPECT_EQ(RunPull(args).status().code(), absl::StatusCode::kUnavailable);
  r = RunZsnap({"pull", "--cri-endpoint", socket_, missing});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("registry is overloaded"));

  service_.SetError(grpc::Status(grpc::StatusCode::UNKNOWN, "unexpected media type"));
  r = RunZsnap({"rmi", "--cri-endpoint", socket_, missing});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_EQ(r.err, absl::StrCat("zsnap rmi: RemoveImage ", missing, " on ", socket_,
                                ": unexpected media type\n"));
}

TEST(PullCommandNoServerTest, NothingListening) {
  testing::TempDir dir;
  const std::string socket = dir.Sub("none.sock");
  Result r = RunZsnap({"pull", "--cri-endpoint", socket, "app:v1"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("zsnap pull: PullImage app:v1 on " + socket + ": "));
  EXPECT_THAT(r.err, HasSubstr("is containerd, or another CRI runtime, listening there?"));
  PullArgs args{.endpoint = socket, .image = "app:v1"};
  EXPECT_EQ(RunPull(args).status().code(), absl::StatusCode::kUnavailable);
}

TEST(PullCommandNoServerTest, RuntimeWithoutImageService) {
  testing::TempDir dir;
  const std::string socket = dir.Sub("empty.sock");
  EmptyImageService service;
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(socket, service);
  ASSERT_TRUE(server.ok()) << server.status();
  Result r = RunZsnap({"pull", "--cri-endpoint", socket, "app:v1"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("does not serve runtime.v1.ImageService"));
}

TEST(PullCommandNoServerTest, Timeout) {
  testing::TempDir dir;
  const std::string socket = dir.Sub("slow.sock");
  StuckImageService service;
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(socket, service);
  ASSERT_TRUE(server.ok()) << server.status();
  Result r = RunZsnap({"pull", "--timeout", "200ms", "--cri-endpoint", socket, "app:v1"});
  service.Release();
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("(no answer within 200ms)"));
}

TEST(PullCommandUsageTest, BadUsage) {
  const std::vector<std::vector<std::string>> cases = {
      {"pull", "app:v1"},                                                // no endpoint
      {"pull", "--cri-endpoint", "/run/c.sock"},                         // no image
      {"pull", "--cri-endpoint", "/run/c.sock", "a:1", "b:1"},           // two images
      {"pull", "--cri-endpoint", "/run/c.sock", ""},                     // empty image
      {"pull", "--cri-endpoint", "tcp://127.0.0.1:1", "a:1"},            // not unix
      {"pull", "--cri-endpoint", "c.sock", "a:1"},                       // relative
      {"pull", "--cri-endpoint", "/run/c.sock", "--creds", "u", "a:1"},  // no ':'
      {"pull", "--cri-endpoint", "/run/c.sock", "--timeout", "soon", "a:1"},
      {"pull", "--cri-endpoint", "/run/c.sock", "--bogus", "a:1"},
      {"pull", "--cri-endpoint"},
      {"rmi", "a:1"},
      {"rmi", "--cri-endpoint", "/run/c.sock", "--json", "a:1"},
      {"rmi", "--cri-endpoint", "/run/c.sock", "--timeout", "-1s", "a:1"},
  };
  for (const std::vector<std::string>& args : cases) {
    Result r = RunZsnap(args);
    EXPECT_EQ(r.code, kExitUsage) << ::testing::PrintToString(args) << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("Run 'zsnap help " + args[0] + "' for usage."))
        << ::testing::PrintToString(args);
    EXPECT_EQ(r.out, "");
  }
  EXPECT_THAT(RunZsnap({"pull", "x"}).err, HasSubstr("--cri-endpoint SOCKET is required"));
  EXPECT_THAT(RunZsnap({"pull", "--cri-endpoint", "/s", "--creds", "u", "x"}).err,
              HasSubstr("--creds wants USER:PASS"));
}

TEST(PullCommandUsageTest, Help) {
  for (const char* cmd : {"pull", "rmi"}) {
    Result r = RunZsnap({"help", cmd});
    EXPECT_EQ(r.code, kExitOk) << cmd;
    EXPECT_THAT(r.out, HasSubstr(absl::StrCat("Usage: zsnap ", cmd, " --cri-endpoint SOCKET")));
    EXPECT_EQ(RunZsnap({cmd, "--help"}).out, r.out) << cmd;
  }
  EXPECT_THAT(RunZsnap({"help"}).out, HasSubstr("zsnap pull --cri-endpoint SOCKET"));
}

}  // namespace
}  // namespace zsnap::plugin
