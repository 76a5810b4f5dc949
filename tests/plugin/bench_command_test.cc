// `zsnap bench`: its options, the driver's argv, where the scripts are found, the report
// written from a results directory, and the CLI's usage errors. The benchmark itself is not run.
#include "plugin/bench_command.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "plugin/cli.h"
#include "tests/plugin/test_util.h"

namespace zsnap::plugin {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::CliResult;
using testing::RunZsnap;
using testing::TempDir;

void WriteText(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}
std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(ParseBenchOptionsTest, Defaults) {
  absl::StatusOr<BenchOptions> o = ParseBenchOptions({});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_THAT(o->images, ElementsAre("python"));
  EXPECT_THAT(o->codecs, ElementsAre("gzip", "zstd"));
  EXPECT_THAT(o->modes, ElementsAre("native", "zsnap"));
  EXPECT_EQ(o->reps, 3);
  EXPECT_EQ(o->cache, kDefaultBenchCache);
  EXPECT_EQ(o->out, "");
  EXPECT_EQ(o->rate, "");
}

TEST(ParseBenchOptionsTest, ListsCommaOrSpaceSeparated) {
  absl::StatusOr<BenchOptions> o = ParseBenchOptions({{"images", "python,minbase"},
                                                      {"codecs", "zstd"},
                                                      {"modes", "zsnap native"},
                                                      {"reps", "5"},
                                                      {"rate", "400mbit"},
                                                      {"out", "/tmp/o"},
                                                      {"cache", "/c"},
                                                      {"img-dir", "/var/tmp"}});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_THAT(o->images, ElementsAre("python", "minbase"));
  EXPECT_THAT(o->codecs, ElementsAre("zstd"));
  EXPECT_THAT(o->modes, ElementsAre("zsnap", "native"));
  EXPECT_EQ(o->reps, 5);
  EXPECT_EQ(o->rate, "400mbit");
  EXPECT_EQ(o->img_dir, "/var/tmp");
}

TEST(ParseBenchOptionsTest, Zstd19CodecAndSmallfilesImage) {
  absl::StatusOr<BenchOptions> o =
      ParseBenchOptions({{"images", "smallfiles"}, {"codecs", "gzip,zstd,zstd19"}});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_THAT(o->images, ElementsAre("smallfiles"));
  EXPECT_THAT(o->codecs, ElementsAre("gzip", "zstd", "zstd19"));
  o->out = "/r";
  std::vector<std::string> argv = ColdStartArgv(*o, "s", "z");
  EXPECT_THAT(std::vector<std::string>(argv.begin() + 7, argv.begin() + 11),
              ElementsAre("--images", "smallfiles", "--codecs", "gzip zstd zstd19"));
  // Only the level-19 variant has a name; other levels are not built by images.sh.
  for (const char* bad : {"zstd3", "zstd-19", "gzip9"}) {
    absl::StatusOr<BenchOptions> b = ParseBenchOptions({{"codecs", bad}});
    ASSERT_FALSE(b.ok()) << bad;
    EXPECT_THAT(b.status().message(), HasSubstr("want gzip, zstd, zstd19")) << bad;
  }
}

TEST(ParseBenchOptionsTest, RejectsBadValuesNamingTheFlag) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"reps", "0"},    {"reps", "101"},     {"reps", "x"},   {"codecs", "lz4"},
      {"codecs", ","},  {"modes", "stargz"}, {"images", ""},  {"images", "../etc"},
      {"images", "Py"}, {"rate", "fast"},    {"rate", "10mb"}};
  for (const auto& [flag, value] : bad) {
    absl::StatusOr<BenchOptions> o = ParseBenchOptions({{flag, value}});
    ASSERT_FALSE(o.ok()) << flag << "=" << value;
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(o.status().message(), HasSubstr("--" + flag)) << value;
  }
}

TEST(ColdStartArgvTest, PassesEveryOption) {
  BenchOptions o;
  o.out = "/r";
  o.images = {"python", "minbase"};
  o.reps = 2;
  EXPECT_THAT(ColdStartArgv(o, "/s/cold_start.sh", "/bin/zsnap"),
              ElementsAre("/s/cold_start.sh", "--zsnap", "/bin/zsnap", "--out", "/r", "--reps", "2",
                          "--images", "python minbase", "--codecs", "gzip zstd", "--modes",
                          "native zsnap", "--cache", kDefaultBenchCache));
  o.rate = "1gbit";
  o.img_dir = "/d";
  std::vector<std::string> argv = ColdStartArgv(o, "s", "z");
  EXPECT_THAT(std::vector<std::string>(argv.end() - 4, argv.end()),
              ElementsAre("--rate", "1gbit", "--img-dir", "/d"));
}

TEST(FindBenchDirTest, EnvThenInstalledLayoutThenSourceTree) {
  TempDir tmp;
  // Installed layout: <prefix>/bin/zsnap and <prefix>/share/zsnap/bench/.
  WriteText(tmp.Sub("usr/share/zsnap/bench/cold_start.sh"), "#!/bin/bash\n");
  WriteText(tmp.Sub("usr/share/zsnap/bench/images.sh"), "#!/bin/bash\n");
  WriteText(tmp.Sub("env/cold_start.sh"), "");
  WriteText(tmp.Sub("env/images.sh"), "");
  unsetenv(kBenchScriptDirEnv);
  absl::StatusOr<std::string> d = FindBenchDir(tmp.Sub("usr/bin/zsnap"));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(*d, tmp.Sub("usr/share/zsnap/bench"));

  setenv(kBenchScriptDirEnv, tmp.Sub("env").c_str(), 1);
  d = FindBenchDir(tmp.Sub("usr/bin/zsnap"));
  unsetenv(kBenchScriptDirEnv);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, tmp.Sub("env"));

  // A build-tree binary finds the source tree's bench/.
  d = FindBenchDir(tmp.Sub("nowhere/zsnap"));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(*d, std::string(ZSNAP_SOURCE_DIR) + "/bench");
}

TEST(WriteBenchReportTest, WritesAllFourFiles) {
  TempDir tmp;
  WriteText(tmp.Sub("env.txt"), "machine: 2 cores\nother\n");
  WriteText(tmp.Sub("logs/z1.log"),
            "t info  remote layer layer=sha256:a outcome=ok bytes_in=10 bytes_out=30 "
            "fetch_s=3.0 total_s=4.0\nt info  remote image outcome=ok wall_s=4.5\n");
  WriteText(
      tmp.Sub("runs.jsonl"),
      R"({"image":"python","codec":"gzip","mode":"native","rep":1,"ok":true,"pull_s":30,"ready_s":32,"start_s":2,"zsnap_log":""})"
      "\n"
      R"({"image":"python","codec":"gzip","mode":"zsnap","rep":1,"ok":true,"pull_s":6,"ready_s":8,"start_s":2,"zsnap_log":"logs/z1.log"})"
      "\n");
  std::ostringstream out;
  ASSERT_TRUE(WriteBenchReport(tmp.path(), out).ok());
  EXPECT_THAT(out.str(), HasSubstr("| - | 0.20x | 0.25x |"));
  EXPECT_THAT(ReadText(tmp.Sub("results.csv")), HasSubstr("python,gzip,zsnap,1,true,6.000"));
  EXPECT_THAT(ReadText(tmp.Sub("results.json")), HasSubstr("\"image_wall_s\": 4.5"));
  EXPECT_THAT(ReadText(tmp.Sub("results.md")), HasSubstr("| python | gzip | 1 | 0 |"));
  EXPECT_THAT(ReadText(tmp.Sub("results.svg")), HasSubstr("machine: 2 cores"));
  EXPECT_FALSE(std::filesystem::exists(tmp.Sub("results.svg.tmp")));
}

TEST(WriteBenchReportTest, MissingOrEmptyRunsIsNotFound) {
  TempDir tmp;
  std::ostringstream out;
  EXPECT_EQ(WriteBenchReport(tmp.path(), out).code(), absl::StatusCode::kNotFound);
  WriteText(tmp.Sub("runs.jsonl"), "\n");  // the driver failed before its first run
  EXPECT_EQ(WriteBenchReport(tmp.path(), out).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(out.str(), "");
  EXPECT_FALSE(std::filesystem::exists(tmp.Sub("results.svg")));
}

TEST(BenchCliTest, UsageErrorsExitTwo) {
  EXPECT_EQ(RunZsnap({"bench", "--reps", "0"}).code, kExitUsage);
  EXPECT_THAT(RunZsnap({"bench", "--codecs", "lz4"}).err, HasSubstr("--codecs"));
  EXPECT_EQ(RunZsnap({"bench", "--push", "h:1"}).code, kExitUsage);
  EXPECT_EQ(RunZsnap({"bench", "images", "--reps", "2"}).code, kExitUsage);
  EXPECT_EQ(RunZsnap({"bench", "report"}).code, kExitUsage);
  EXPECT_EQ(RunZsnap({"bench", "frobnicate"}).code, kExitUsage);
  EXPECT_EQ(RunZsnap({"bench", "--bogus"}).code, kExitUsage);
  CliResult help = RunZsnap({"help", "bench"});
  EXPECT_EQ(help.code, kExitOk);
  EXPECT_THAT(help.out, HasSubstr("zsnap bench images"));
}

TEST(BenchCliTest, ReportRendersADirectory) {
  TempDir tmp;
  WriteText(
      tmp.Sub("runs.jsonl"),
      R"({"image":"minbase","codec":"zstd","mode":"native","rep":1,"ok":true,"pull_s":3,"ready_s":4,"start_s":1})"
      "\n");
  CliResult r = RunZsnap({"bench", "report", tmp.path()});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("| minbase | zstd | native | 1 |"));
  EXPECT_EQ(RunZsnap({"bench", "report", tmp.Sub("missing")}).code, kExitFailure);
}

}  // namespace
}  // namespace zsnap::plugin
