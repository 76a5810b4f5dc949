#include "plugin/pull_stats.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>

#include "plugin/report_store.h"
#include "tests/plugin/pull_fixtures.h"
#include "tests/plugin/test_util.h"

namespace zsnap::plugin {
namespace {

using testing::FixtureImage;
using ::testing::HasSubstr;

constexpr int64_t kT0 = 1795000000000;  // 2026-11-18 11:06:40 UTC

TEST(CheckRecordTest, TheFixtureIsConsistent) {
  EXPECT_TRUE(CheckImageRecord(FixtureImage(3, kT0)).ok())
      << CheckImageRecord(FixtureImage(3, kT0));
}

TEST(CheckRecordTest, EachRuleIsEnforced) {
  struct Case {
    std::string name;
    std::function<void(unpack::ImageRecord&)> bend;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"negative", [](auto& r) { r.layers[0].commit_s = -1; }, "commit_s = -1"},
      {"ttfb", [](auto& r) { r.layers[0].fetch.ttfb_s = 1; }, "ttfb 1.000s > fetch 0.400s"},
      {"fetch outlasts", [](auto& r) { r.layers[1].fetch.duration_s = 2; },
       "fetch 2.000s outlasts the unpack's 0.500s + ttfb 0.020s"},
      {"decode", [](auto& r) { r.layers[0].unpack.decode.busy_s = 0.9; }, "decode busy 0.900s"},
      {"write", [](auto& r) { r.layers[0].unpack.write.busy_s = 2.1; }, "x 4 threads"},
      {"parts", [](auto& r) { r.layers[0].queue_wait_s = 0.2; },
       "queue 0.200 + unpack 0.500 + commit 0.005 = 0.705s > total 0.520s"},
      {"bytes", [](auto& r) { r.layers[0].unpack.bytes_in -= 1; }, "fetched 1000000 bytes but"},
      {"wall", [](auto& r) { r.wall_s = 0.3; }, "total 0.520s > the image's wall 0.300s"},
      {"remote", [](auto& r) { r.layers_remote = 1; }, "layers_remote = 1 but 2 layers are ok"},
      {"total", [](auto& r) { r.layers_fallback = 1; }, "> layers_total 2"},
      {"bytes sum", [](auto& r) { r.bytes_out += 1; }, "but the layers sum to"},
  };
  for (const Case& c : cases) {
    unpack::ImageRecord r = FixtureImage(2, kT0);
    c.bend(r);
    const absl::Status s = CheckImageRecord(r);
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << c.name;
    EXPECT_THAT(s.message(), HasSubstr(c.want)) << c.name;
  }
  // A small layer's fetch is mostly its time to first byte, before the unpack's clock starts.
  {
    unpack::ImageRecord r = FixtureImage(1, kT0);
    r.layers[0].fetch = {.ttfb_s = 0.186, .duration_s = 0.186, .bytes = 352, .retries = 0};
    r.layers[0].unpack.bytes_in = 352;
    r.layers[0].unpack.total_s = 0.135;
    r.layers[0].unpack.decode.busy_s = r.layers[0].unpack.extract.busy_s = 0;
    r.layers[0].unpack.write.busy_s = r.layers[0].unpack.verify.busy_s = 0;
    r.bytes_in = 352;
    EXPECT_TRUE(CheckImageRecord(r).ok()) << CheckImageRecord(r);
  }
  // An image whose manifest never resolved: its layer count is unknown (0) and every
  // Prepare that asked fell back (the failure path logged "inconsistent timing record").
  {
    unpack::ImageRecord r = FixtureImage(0, kT0);
    r.layers_total = 0;
    r.layers_remote = 0;
    r.layers_fallback = 2;
    r.outcome = "failed";
    EXPECT_TRUE(CheckImageRecord(r).ok()) << CheckImageRecord(r);
  }
  // A failed layer's partial fetch is not held to the bytes rule.
  unpack::ImageRecord r = FixtureImage(2, kT0);
  r.layers[1].outcome = "failed";
  r.layers[1].unpack.bytes_in = 10;
  r.layers_remote = 1;
  r.layers_fallback = 1;
  r.outcome = "partial";
  EXPECT_TRUE(CheckImageRecord(r).ok()) << CheckImageRecord(r);
}

TEST(PullStatsTest, SummarySumsStagesOverLayers) {
  const PullSummary s = Summarize(FixtureImage(3, kT0));
  EXPECT_DOUBLE_EQ(s.fetch_s, 3 * 0.400);
  EXPECT_DOUBLE_EQ(s.decode_s, 3 * 0.150);
  EXPECT_DOUBLE_EQ(s.write_s, 3 * 0.300);
  EXPECT_DOUBLE_EQ(s.commit_s, 3 * 0.005);
  EXPECT_NEAR(s.mbps, (3 * 3000000.0 + 3) / 0.75 / 1e6, 1e-9);
}

TEST(PullStatsTest, TableGolden) {
  unpack::ImageRecord zstd = FixtureImage(1, kT0 + 61000, "zstd");
  zstd.image = "127.0.0.1:5000/a-much-longer-name/app:zstd";
  unpack::ImageRecord partial = FixtureImage(3, kT0);
  partial.layers_total = 4;
  partial.layers_fallback = 1;
  partial.outcome = "partial";
  const std::string want =
      "TIME (UTC)           IMAGE                                       OUTCOME  LAYERS        IN"
      "     OUT  WALL_S  QUEUE   TTFB  FETCH  DECODE  EXTRACT  WRITE  VERIFY  COMMIT  MB/S\n"
      "2026-11-18 11:07:41  127.0.0.1:5000/a-much-longer-name/app:zstd  ok          1/1  976.6KiB"
      "  2.9MiB   0.750  0.010  0.020  0.400   0.150    0.100  0.300   0.030   0.005   4.0\n"
      "2026-11-18 11:06:40  127.0.0.1:5000/app:v1                       partial     3/4    2.9MiB"
      "  8.6MiB   0.750  0.030  0.060  1.200   0.450    0.300  0.900   0.090   0.015  12.0\n";
  EXPECT_EQ(FormatStatsTable({zstd, partial}), want);
}

TEST(PullStatsTest, JsonIsAnArrayOfTheRecords) {
  const std::vector<unpack::ImageRecord> records = {FixtureImage(2, kT0 + 1), FixtureImage(1, kT0)};
  const nlohmann::json j = nlohmann::json::parse(FormatStatsJson(records));
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 2u);
  for (size_t i = 0; i < records.size(); ++i) {
    absl::StatusOr<unpack::ImageRecord> back = unpack::ImageRecordFromJson(j[i]);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(unpack::ToJson(*back), unpack::ToJson(records[i]));
  }
  EXPECT_EQ(FormatStatsJson({}), "[]\n");
}

TEST(PullStatsTest, PrintStatsFromAStore) {
  testing::TempDir tmp;
  const std::string dir = ReportsDir(tmp.path());
  std::ostringstream out, err;
  ASSERT_TRUE(PrintStats(dir, 10, false, out, err).ok());
  EXPECT_EQ(out.str(), "no pull reports in " + dir + "\n");

  absl::StatusOr<std::unique_ptr<ReportStore>> store = ReportStore::Open(dir, 10);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Append(FixtureImage(2, kT0)).ok());
  out.str("");
  ASSERT_TRUE(PrintStats(dir, 10, false, out, err).ok());
  EXPECT_THAT(out.str(), HasSubstr("2026-11-18 11:06:40  127.0.0.1:5000/app:v1"));
  EXPECT_THAT(out.str(), HasSubstr("summed over each pull's layers"));
  EXPECT_EQ(err.str(), "");
}

}  // namespace
}  // namespace zsnap::plugin
