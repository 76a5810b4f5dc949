#include "plugin/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

namespace zsnap::plugin {
namespace {

using ::testing::HasSubstr;
using UserXattr = overlay::SnapshotterOptions::UserXattr;

absl::StatusOr<Config> Parse(const std::string& text) { return Config::Parse(text, "z.toml"); }

TEST(ConfigTest, EmptyDocumentIsTheDefaults) {
  absl::StatusOr<Config> config = Parse("");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->root, "/var/lib/zsnap");
  EXPECT_EQ(config->address, "/run/zsnap/zsnap.sock");
  EXPECT_EQ(config->log_level, spdlog::level::info);
  EXPECT_EQ(config->log_format, LogFormat::kText);
  EXPECT_EQ(config->userxattr, UserXattr::kAuto);
  EXPECT_EQ(config->unpack.writer_threads, 0);
  EXPECT_EQ(config->unpack.max_uncompressed_bytes, uint64_t{64} << 30);
  EXPECT_EQ(config->unpack.zstd_window_log_max, 29);
  EXPECT_EQ(*config, Config());
}

TEST(ConfigTest, EveryKey) {
  absl::StatusOr<Config> config = Parse(R"(
root = "/srv/zsnap"
address = "/run/z/s.sock"
log_level = "debug"
log_format = "json"
userxattr = "on"

[unpack]
writer_threads = 8
max_uncompressed_bytes = 1048576
zstd_window_log_max = 31

[remote]
enabled = false
hosts_dir = "/etc/zsnap/certs.d"
docker_config = "/etc/zsnap/docker.json"
max_concurrent_layers = 6
max_concurrent_layers_per_image = 2
unclaimed_ttl_s = 60
connect_timeout_s = 5
io_timeout_s = 7
max_attempts = 9
)");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->remote, (RemoteConfig{.enabled = false,
                                          .hosts_dir = "/etc/zsnap/certs.d",
                                          .docker_config = "/etc/zsnap/docker.json",
                                          .max_concurrent_layers = 6,
                                          .max_concurrent_layers_per_image = 2,
                                          .unclaimed_ttl_s = 60,
                                          .connect_timeout_s = 5,
                                          .io_timeout_s = 7,
                                          .max_attempts = 9}));
  EXPECT_EQ(config->root, "/srv/zsnap");
  EXPECT_EQ(config->address, "/run/z/s.sock");
  EXPECT_EQ(config->log_level, spdlog::level::debug);
  EXPECT_EQ(config->log_format, LogFormat::kJson);
  EXPECT_EQ(config->userxattr, UserXattr::kOn);
  EXPECT_EQ(config->unpack.writer_threads, 8);
  EXPECT_EQ(config->unpack.max_uncompressed_bytes, 1048576u);
  EXPECT_EQ(config->unpack.zstd_window_log_max, 31);
  const unpack::UnpackLimits limits = config->unpack.Limits();
  EXPECT_EQ(limits.max_uncompressed_bytes, 1048576u);
  EXPECT_EQ(limits.zstd_window_log_max, 31);
}

TEST(ConfigTest, EnumSpellings) {
  for (auto [text, level] : std::vector<std::pair<std::string, spdlog::level::level_enum>>{
           {"trace", spdlog::level::trace},
           {"warn", spdlog::level::warn},
           {"warning", spdlog::level::warn},
           {"error", spdlog::level::err},
           {"critical", spdlog::level::critical},
           {"off", spdlog::level::off}}) {
    absl::StatusOr<Config> config = Parse("log_level = \"" + text + "\"");
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_EQ(config->log_level, level) << text;
  }
  EXPECT_EQ(Parse("userxattr = \"off\"")->userxattr, UserXattr::kOff);
  EXPECT_EQ(Parse("userxattr = \"auto\"")->userxattr, UserXattr::kAuto);
  EXPECT_EQ(Parse("log_format = \"text\"")->log_format, LogFormat::kText);
}

TEST(ConfigTest, UnknownKeysAreNamedWithTheirLine) {
  absl::StatusOr<Config> config = Parse("root = \"/a\"\nrooot = \"/b\"\n[unpack]\nthreads = 4\n");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr("z.toml:2:1: unknown key 'rooot'"));
  EXPECT_THAT(config.status().message(), HasSubstr("z.toml:4:1: unknown key 'unpack.threads'"));
}

TEST(ConfigTest, UnknownTable) {
  absl::StatusOr<Config> config = Parse("[grpc]\naddress = \"/x\"\n");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("unknown key 'grpc'"));
}

TEST(ConfigTest, BadTypes) {
  struct Case {
    std::string text;
    std::string want;
  };
  for (const Case& c : std::vector<Case>{
           {"root = 5", "z.toml:1:8: key 'root' must be a string, got integer"},
           {"address = true", "key 'address' must be a string, got boolean"},
           {"log_level = [\"info\"]", "key 'log_level' must be a string, got array"},
           {"log_format = 1.5", "key 'log_format' must be a string, got float"},
           {"unpack = 3", "key 'unpack' must be a table, got integer"},
           {"[unpack]\nwriter_threads = \"4\"",
            "z.toml:2:18: key 'unpack.writer_threads' must "
            "be an integer, got string"},
           {"[unpack]\nmax_uncompressed_bytes = 1e9", "must be an integer, got float"},
           {"[remote]\nenabled = \"yes\"", "key 'remote.enabled' must be a boolean, got string"},
           {"remote = 1", "key 'remote' must be a table, got integer"},
       }) {
    absl::StatusOr<Config> config = Parse(c.text);
    ASSERT_FALSE(config.ok()) << c.text;
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(config.status().message(), HasSubstr(c.want)) << c.text;
  }
}

TEST(ConfigTest, BadValues) {
  struct Case {
    std::string text;
    std::string want;
  };
  for (const Case& c : std::vector<Case>{
           {"log_level = \"loud\"", "unknown log level \"loud\""},
           {"log_format = \"xml\"", "unknown log format \"xml\""},
           {"userxattr = \"yes\"", "unknown userxattr mode \"yes\""},
           {"[unpack]\nwriter_threads = -1", "'unpack.writer_threads' = -1 is out of range"},
           {"[unpack]\nwriter_threads = 5000", "out of range [0, 1024]"},
           {"[unpack]\nzstd_window_log_max = 9", "out of range [10, 31]"},
           {"[unpack]\nmax_uncompressed_bytes = 0", "out of range"},
           {"[remote]\nmax_concurrent_layers = 0", "out of range [1, 256]"},
           {"[remote]\nunclaimed_ttl_s = 0", "'remote.unclaimed_ttl_s' = 0 is out of range"},
           {"[remote]\nretries = 3", "unknown key 'remote.retries'"},
           {"root = \"relative/dir\"", "root \"relative/dir\" must be an absolute path"},
           {"address = \"\"", "must be an absolute socket path"},
           {"address = \"/" + std::string(120, 'a') + "\"", "longer than the 107 bytes"},
       }) {
    absl::StatusOr<Config> config = Parse(c.text);
    ASSERT_FALSE(config.ok()) << c.text;
    EXPECT_THAT(config.status().message(), HasSubstr(c.want)) << c.text;
  }
}

TEST(ConfigTest, AllProblemsReportedAtOnce) {
  absl::StatusOr<Config> config = Parse("a = 1\nroot = 2\nlog_level = \"x\"\n");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("z.toml:1:1: unknown key 'a'"));
  EXPECT_THAT(config.status().message(), HasSubstr("z.toml:2:"));
  EXPECT_THAT(config.status().message(), HasSubstr("z.toml:3:"));
}

TEST(ConfigTest, SyntaxErrorNamesFileAndLine) {
  absl::StatusOr<Config> config = Parse("root = \"/a\"\nlog_level = \n");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr("z.toml:2:"));
}

TEST(ConfigTest, DuplicateKeyIsAnError) {
  EXPECT_FALSE(Parse("root = \"/a\"\nroot = \"/b\"\n").ok());
}

TEST(ConfigTest, ToTomlRoundTrips) {
  Config config;
  config.root = "/srv/z \"quoted\"";
  config.address = "/run/z.sock";
  config.log_level = spdlog::level::warn;
  config.log_format = LogFormat::kJson;
  config.userxattr = UserXattr::kOff;
  config.unpack = {.writer_threads = 3, .max_uncompressed_bytes = 77, .zstd_window_log_max = 20};
  config.remote.enabled = false;
  config.remote.hosts_dir = "/x y";
  config.remote.max_attempts = 2;
  for (const Config& c : {Config(), config}) {
    absl::StatusOr<Config> back = Parse(c.ToToml());
    ASSERT_TRUE(back.ok()) << back.status() << "\n" << c.ToToml();
    EXPECT_EQ(*back, c) << c.ToToml();
  }
}

TEST(ConfigTest, LoadReadsAFile) {
  const std::string path = ::testing::TempDir() + "/zsnap-config-test.toml";
  {
    std::ofstream out(path);
    out << "root = \"/srv/zsnap\"\n[unpack]\nbogus = 1\n";
  }
  absl::StatusOr<Config> config = Config::Load(path);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr(path + ":3:1: unknown key 'unpack.bogus'"));
  {
    std::ofstream out(path);
    out << "root = \"/srv/zsnap\"\n";
  }
  config = Config::Load(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->root, "/srv/zsnap");
  std::remove(path.c_str());
}

TEST(ConfigTest, LoadMissingFile) {
  absl::StatusOr<Config> config = Config::Load("/nonexistent/zsnap.toml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(config.status().message(),
              HasSubstr("cannot open config file /nonexistent/zsnap.toml: No such file"));
}

TEST(ConfigTest, ShippedConfigParsesToTheDefaults) {
  // packaging/etc/config.toml documents every key with its default value.
  const std::string path = std::string(ZSNAP_SOURCE_DIR) + "/packaging/etc/config.toml";
  absl::StatusOr<Config> config = Config::Load(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(*config, Config());
}

TEST(ConfigTest, MetricsAndReportsTables) {
  EXPECT_EQ(Config().metrics.address, "");
  EXPECT_EQ(Config().reports.keep, 100);
  for (const char* address : {"127.0.0.1:9464", "[::1]:0", "unix:///run/zsnap/metrics.sock"}) {
    absl::StatusOr<Config> config =
        Parse(std::string("[metrics]\naddress = \"") + address + "\"\n[reports]\nkeep = 0\n");
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_EQ(config->metrics.address, address);
    EXPECT_EQ(config->reports.keep, 0);
    absl::StatusOr<Config> back = Parse(config->ToToml());
    ASSERT_TRUE(back.ok()) << back.status() << "\n" << config->ToToml();
    EXPECT_EQ(*back, *config);
  }
}

TEST(ConfigTest, BadMetricsAndReports) {
  struct Case {
    std::string text;
    std::string want;
  };
  for (const Case& c : std::vector<Case>{
           {"metrics = 1", "key 'metrics' must be a table, got integer"},
           {"reports = \"x\"", "key 'reports' must be a table, got string"},
           {"[metrics]\naddress = 9464", "z.toml:2:11: key 'metrics.address' must be a string"},
           {"[metrics]\naddress = \"localhost:9464\"",
            "z.toml:2:11: metrics address \"localhost:9464\": the host must be an IP address"},
           {"[metrics]\naddress = \"unix://run/m.sock\"", "the socket path must be absolute"},
           {"[metrics]\nport = 1", "z.toml:2:1: unknown key 'metrics.port'"},
           {"[reports]\nkeep = -1", "'reports.keep' = -1 is out of range [0, 100000]"},
           {"[reports]\ndir = \"/x\"", "unknown key 'reports.dir'"},
       }) {
    absl::StatusOr<Config> config = Parse(c.text);
    ASSERT_FALSE(config.ok()) << c.text;
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(config.status().message(), HasSubstr(c.want)) << c.text;
  }
  Config config;
  config.metrics.address = "9464";
  EXPECT_THAT(config.Validate().message(), HasSubstr("missing \":PORT\""));
  config.metrics.address = "";
  config.reports.keep = 100001;
  EXPECT_THAT(config.Validate().message(), HasSubstr("out of range"));
}

}  // namespace
}  // namespace zsnap::plugin
