#include "plugin/cli.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "tests/plugin/test_util.h"

namespace zsnap::plugin {
namespace {

using ::testing::HasSubstr;

using Result = testing::CliResult;
using testing::RunZsnap;

TEST(ParseArgsTest, FlagsAndPositionalsInterleave) {
  const std::vector<std::string> args = {"blob", "--digest", "sha256:1",
                                         "dest", "--json",   "--threads=4"};
  absl::StatusOr<ParsedArgs> p = ParseArgs(args, {"digest", "threads"}, {"json"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_THAT(p->positional, ::testing::ElementsAre("blob", "dest"));
  EXPECT_EQ(p->values.at("digest"), "sha256:1");
  EXPECT_EQ(p->values.at("threads"), "4");
  EXPECT_TRUE(p->bools.contains("json"));
  EXPECT_FALSE(p->help);
}

TEST(ParseArgsTest, DashIsStdinAndDoubleDashEndsFlags) {
  const std::vector<std::string> args = {"-", "--", "--json"};
  absl::StatusOr<ParsedArgs> p = ParseArgs(args, {}, {"json"});
  ASSERT_TRUE(p.ok());
  EXPECT_THAT(p->positional, ::testing::ElementsAre("-", "--json"));
  EXPECT_TRUE(p->bools.empty());
}

TEST(ParseArgsTest, Errors) {
  const std::vector<std::string> unknown = {"--bogus"};
  EXPECT_THAT(ParseArgs(unknown, {}, {}).status().message(), HasSubstr("unknown flag --bogus"));
  const std::vector<std::string> missing = {"--config"};
  EXPECT_THAT(ParseArgs(missing, {"config"}, {}).status().message(), HasSubstr("needs a value"));
  const std::vector<std::string> bool_value = {"--json=yes"};
  EXPECT_THAT(ParseArgs(bool_value, {}, {"json"}).status().message(), HasSubstr("takes no value"));
  const std::vector<std::string> short_flag = {"-j"};
  EXPECT_FALSE(ParseArgs(short_flag, {}, {}).ok());
  const std::vector<std::string> help = {"-h"};
  EXPECT_TRUE(ParseArgs(help, {}, {})->help);
}

TEST(CliTest, HelpAndUsage) {
  Result r = RunZsnap({"help"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.out, HasSubstr("zsnap serve"));
  EXPECT_THAT(r.out, HasSubstr("zsnap unpack"));
  EXPECT_EQ(RunZsnap({"--help"}).code, kExitOk);
  for (const std::string cmd : {"serve", "unpack", "config", "version"}) {
    r = RunZsnap({"help", cmd});
    EXPECT_EQ(r.code, kExitOk) << cmd;
    EXPECT_THAT(r.out, HasSubstr("Usage: zsnap " + cmd)) << cmd;
    EXPECT_EQ(RunZsnap({cmd, "--help"}).out, r.out) << cmd;
  }
  r = RunZsnap({});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("Usage:"));
  r = RunZsnap({"frobnicate"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("unknown command 'frobnicate'"));
  EXPECT_EQ(RunZsnap({"help", "frobnicate"}).code, kExitUsage);
}

TEST(CliTest, Version) {
  Result r = RunZsnap({"version"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.out, HasSubstr(std::string("zsnap ") + ZSNAP_VERSION));
  EXPECT_EQ(RunZsnap({"version", "extra"}).code, kExitUsage);
}

TEST(CliTest, ConfigDefaultAndCheck) {
  Result r = RunZsnap({"config", "default"});
  ASSERT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.out, HasSubstr("root = '/var/lib/zsnap'"));
  EXPECT_THAT(r.out, HasSubstr("zstd_window_log_max = 29"));

  testing::TempDir dir;
  const std::string good = dir.Sub("good.toml");
  std::ofstream(good) << "root = \"/srv/z\"\n";
  r = RunZsnap({"config", "check", good});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("root = '/srv/z'"));

  const std::string bad = dir.Sub("bad.toml");
  std::ofstream(bad) << "rot = \"/srv/z\"\n";
  r = RunZsnap({"config", "check", bad});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr(bad + ":1:1: unknown key 'rot'"));
  EXPECT_EQ(RunZsnap({"config"}).code, kExitUsage);
}

TEST(CliTest, ServeRejectsBadConfigAndUnusableRoot) {
  testing::TempDir dir;
  const std::string bad = dir.Sub("bad.toml");
  std::ofstream(bad) << "log_level = 3\n";
  Result r = RunZsnap({"serve", "--config", bad});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("zsnap serve: " + bad + ":1:13: key 'log_level' must be a string"));

  r = RunZsnap({"serve", "--config", dir.Sub("missing.toml")});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("cannot open config file"));

  const std::string file = dir.Sub("file");
  std::ofstream(file) << "x";
  r = RunZsnap({"serve", "--root", file, "--address", dir.Sub("s.sock"), "--log-level", "off"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("root " + file + " is not a directory"));

  r = RunZsnap(
      {"serve", "--root", file + "/sub", "--address", dir.Sub("s.sock"), "--log-level", "off"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("Not a directory"));

  EXPECT_EQ(RunZsnap({"serve", "--root", "relative"}).code, kExitFailure);
  EXPECT_EQ(RunZsnap({"serve", "--log-level", "loud"}).code, kExitUsage);
  EXPECT_EQ(RunZsnap({"serve", "stray"}).code, kExitUsage);
}

TEST(CliTest, UnpackUsageErrors) {
  Result r = RunZsnap({"unpack", "only-one"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("BLOB|- DEST"));
  r = RunZsnap({"unpack", "a", "b", "--threads", "many"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("--threads wants an integer"));
  testing::TempDir dir;
  r = RunZsnap({"unpack", dir.Sub("missing.tar.gz"), dir.Sub("out")});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("missing.tar.gz"));
}

// `zsnap serve` end to end in a child process: it must answer RPCs on its socket, log that
// it is serving, and exit 0 on SIGTERM. A child, because the signal is process-wide.
void ServeUntilProbeSendsSigterm(const std::string& dir) {
  const std::string socket = dir + "/run/zsnap.sock";
  bool probe_ok = false;
  std::thread probe([&] {
    // This thread exists before serve blocks the signals; keep it from taking SIGTERM.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    auto channel = grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials());
    if (channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(30))) {
      auto stub = ::containerd::services::snapshots::v1::Snapshots::NewStub(channel);
      ::containerd::services::snapshots::v1::StatSnapshotRequest req;
      req.set_key("missing");
      ::containerd::services::snapshots::v1::StatSnapshotResponse resp;
      grpc::ClientContext ctx;
      probe_ok = stub->Stat(&ctx, req, &resp).error_code() == grpc::StatusCode::NOT_FOUND;
    }
    kill(getpid(), SIGTERM);
  });
  const Result r = RunZsnap({"serve", "--root", dir + "/root", "--address", socket});
  probe.join();
  std::cerr << r.err;
  std::exit(r.code == kExitOk && probe_ok ? 0 : 10 + r.code);
}

TEST(CliServeDeathTest, ServesUntilSigterm) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // The child re-runs this test body: share one directory through the environment.
  std::optional<testing::TempDir> owned;
  std::string path;
  if (const char* env = std::getenv("ZSNAP_PLUGIN_SERVE_TEST_DIR")) {
    path = env;
  } else {
    path = owned.emplace().path();
    setenv("ZSNAP_PLUGIN_SERVE_TEST_DIR", path.c_str(), 1);
  }
  EXPECT_EXIT(ServeUntilProbeSendsSigterm(path), ::testing::ExitedWithCode(0),
              "serving address=.*stopping.*stopped");
  unsetenv("ZSNAP_PLUGIN_SERVE_TEST_DIR");
}

}  // namespace
}  // namespace zsnap::plugin
