// `zsnap stats` through RunCli: the report history of a root as a table or JSON.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "plugin/cli.h"
#include "plugin/report_store.h"
#include "tests/plugin/pull_fixtures.h"
#include "tests/plugin/test_util.h"

namespace zsnap::plugin {
namespace {

using testing::FixtureImage;
using ::testing::HasSubstr;

constexpr int64_t kT0 = 1795000000000;

using Result = testing::CliResult;
using testing::RunZsnap;

class CliStatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<ReportStore>> store =
        ReportStore::Open(ReportsDir(root_.path()), 10);
    ASSERT_TRUE(store.ok());
    for (int i = 0; i < 3; ++i) ASSERT_TRUE((*store)->Append(FixtureImage(i + 1, kT0 + i)).ok());
  }
  testing::TempDir root_;
};

TEST_F(CliStatsTest, TableFromRoot) {
  const Result r = RunZsnap({"stats", "--root", root_.path()});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("TIME (UTC)"));
  // Newest first: 3 layers, then 2, then 1.
  const size_t three = r.out.find(" 3/3 ");
  const size_t two = r.out.find(" 2/2 ");
  const size_t one = r.out.find(" 1/1 ");
  ASSERT_NE(three, std::string::npos);
  EXPECT_LT(three, two);
  EXPECT_LT(two, one);
}

TEST_F(CliStatsTest, JsonWithLimitAndConfig) {
  const std::string config = root_.Sub("zsnap.toml");
  std::ofstream(config) << "root = \"" << root_.path() << "\"\n";
  const Result r = RunZsnap({"stats", "--config", config, "--json", "--limit", "2"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["started_unix_ms"], kT0 + 2);
  EXPECT_EQ(j[0]["layers"].size(), 3u);
  EXPECT_EQ(j[1]["started_unix_ms"], kT0 + 1);
}

TEST_F(CliStatsTest, EmptyHistoryAndUsageErrors) {
  testing::TempDir empty;
  Result r = RunZsnap({"stats", "--root", empty.path()});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.out, HasSubstr("no pull reports in " + empty.path() + "/reports"));
  r = RunZsnap({"stats", "--root", empty.path(), "--json"});
  EXPECT_EQ(r.out, "[]\n");

  EXPECT_EQ(RunZsnap({"stats", "--root", "/a", "--config", "/b"}).code, kExitUsage);
  EXPECT_EQ(RunZsnap({"stats", "--limit", "0"}).code, kExitUsage);
  EXPECT_EQ(RunZsnap({"stats", "--limit", "x"}).code, kExitUsage);
  EXPECT_EQ(RunZsnap({"stats", "extra"}).code, kExitUsage);
  EXPECT_EQ(RunZsnap({"stats", "--config", "/nonexistent.toml"}).code, kExitFailure);
  r = RunZsnap({"help", "stats"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.out, HasSubstr("Usage: zsnap stats"));
  EXPECT_THAT(RunZsnap({"help"}).out, HasSubstr("zsnap stats [--config FILE | --root DIR]"));
}

}  // namespace
}  // namespace zsnap::plugin
