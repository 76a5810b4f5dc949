#include "plugin/pull_recorder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "plugin/logging.h"
#include "plugin/pull_stats.h"
#include "spdlog/spdlog.h"
#include "tests/plugin/pull_fixtures.h"
#include "tests/plugin/test_util.h"

namespace zsnap::plugin {
namespace {

using testing::FixtureImage;
using ::testing::HasSubstr;
using testing::Sample;

constexpr int64_t kT0 = 1795000000000;

// Feeds one image pull the way the puller does: in-flight +1/-1 around each layer, OnLayer
// per layer, then OnImage.
void Feed(PullRecorder& recorder, const unpack::ImageRecord& image) {
  for (const unpack::LayerRecord& l : image.layers) {
    recorder.OnInFlight(1);
    recorder.OnLayer(l);
    recorder.OnInFlight(-1);
  }
  recorder.OnImage(image);
}

// What the metrics say about a fed pull agrees with the records: bytes match, every layer's
// stages are observed, the stage sums add up within the wall time, the report is kept.
TEST(PullRecorderTest, MetricsAndHistoryAgreeWithTheRecords) {
  testing::TempDir tmp;
  absl::StatusOr<std::unique_ptr<ReportStore>> store = ReportStore::Open(tmp.Sub("reports"), 10);
  ASSERT_TRUE(store.ok());
  Metrics metrics(BuildInfo{});
  PullRecorder recorder(metrics, store->get());
  const unpack::ImageRecord image = FixtureImage(3, kT0);
  ASSERT_TRUE(CheckImageRecord(image).ok());
  Feed(recorder, image);
  recorder.Flush();

  const std::string text = metrics.Expose();
  EXPECT_EQ(Sample(text, R"(zsnap_fetched_bytes_total{codec="gzip"})"),
            static_cast<double>(image.bytes_in));
  EXPECT_EQ(Sample(text, R"(zsnap_unpacked_bytes_total{codec="gzip"})"),
            static_cast<double>(image.bytes_out));
  EXPECT_EQ(Sample(text, R"(zsnap_layers_total{codec="gzip",outcome="ok"})"), image.layers_remote);
  EXPECT_EQ(Sample(text, "zsnap_layers_in_flight"), 0);
  EXPECT_EQ(Sample(text, R"(zsnap_image_pull_duration_seconds_count{outcome="ok"})"), 1);
  const double wall = Sample(text, R"(zsnap_image_pull_duration_seconds_sum{outcome="ok"})");
  EXPECT_DOUBLE_EQ(wall, image.wall_s);
  const auto stage_sum = [&](const char* stage) {
    return Sample(
        text, absl::StrCat(R"(zsnap_layer_stage_duration_seconds_sum{codec="gzip",stage=")", stage,
                           "\"}"));
  };
  double layer_totals = 0;
  for (const auto& l : image.layers) layer_totals += l.total_s;
  EXPECT_NEAR(stage_sum("total"), layer_totals, 1e-9);
  // Per layer, queue + unpack + commit fit in its total; each total fits in the wall time.
  EXPECT_LE(stage_sum("queue") + stage_sum("commit"), stage_sum("total"));
  EXPECT_LE(stage_sum("total") / image.layers.size(), wall);

  absl::StatusOr<LoadedReports> loaded = ReadReports(tmp.Sub("reports"), 0);
  ASSERT_TRUE(loaded.ok());
  ASSERT_EQ(loaded->records.size(), 1u);
  EXPECT_EQ(unpack::ToJson(loaded->records[0]), unpack::ToJson(image));
}

TEST(PullRecorderTest, LogsOneStructuredLinePerRecord) {
  SetupLogging({.level = spdlog::level::info, .format = LogFormat::kText});
  Metrics metrics(BuildInfo{});
  PullRecorder recorder(metrics, nullptr);
  unpack::ImageRecord image = FixtureImage(1, kT0);
  image.wall_s = 0.1;  // shorter than its layer: inconsistent, and said so
  ::testing::internal::CaptureStderr();
  Feed(recorder, image);
  recorder.OnFallback("digest", "layer sha256:aa: digest mismatch");
  spdlog::default_logger_raw()->flush();
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(log, HasSubstr("pull_layer image=127.0.0.1:5000/app:v1 layer=sha256:"));
  EXPECT_THAT(log, HasSubstr("outcome=ok index=0 codec=gzip bytes_in=1000000"));
  EXPECT_THAT(log, HasSubstr("pull_image image=127.0.0.1:5000/app:v1"));
  EXPECT_THAT(log, HasSubstr("inconsistent timing record"));
  EXPECT_THAT(log, HasSubstr("pull_fallback reason=digest detail=\"layer sha256:aa: digest"));
  EXPECT_EQ(Sample(metrics.Expose(), R"(zsnap_fallbacks_total{reason="digest"})"), 1);
}

TEST(PullRecorderTest, ConcurrentPullsAreAllKept) {
  testing::TempDir tmp;
  absl::StatusOr<std::unique_ptr<ReportStore>> store = ReportStore::Open(tmp.Sub("reports"), 100);
  ASSERT_TRUE(store.ok());
  Metrics metrics(BuildInfo{});
  spdlog::set_level(spdlog::level::warn);
  {
    PullRecorder recorder(metrics, store->get());
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&recorder, t] {
        for (int i = 0; i < 10; ++i) Feed(recorder, FixtureImage(2, kT0 + t * 100 + i));
      });
    }
    for (std::thread& t : threads) t.join();
  }  // the destructor writes what is queued
  spdlog::set_level(spdlog::level::info);
  absl::StatusOr<LoadedReports> loaded = ReadReports(tmp.Sub("reports"), 0);
  ASSERT_TRUE(loaded.ok());
  // Up to kMaxQueuedReports may be waiting at once; 40 never overflow it.
  EXPECT_EQ(loaded->records.size(), 40u);
  const std::string text = metrics.Expose();
  EXPECT_EQ(Sample(text, R"(zsnap_layers_total{codec="gzip",outcome="ok"})"), 80);
  EXPECT_EQ(Sample(text, "zsnap_reports_dropped_total"), 0);
}

TEST(PullRecorderTest, AFailingHistoryIsCountedNotFatal) {
  testing::TempDir tmp;
  absl::StatusOr<std::unique_ptr<ReportStore>> store = ReportStore::Open(tmp.Sub("reports"), 10);
  ASSERT_TRUE(store.ok());
  std::filesystem::remove_all(tmp.Sub("reports"));  // every write now fails
  Metrics metrics(BuildInfo{});
  PullRecorder recorder(metrics, store->get());
  // The daemon's logger (stderr), whatever earlier tests in this process left behind.
  SetupLogging({.level = spdlog::level::info, .format = LogFormat::kText});
  ::testing::internal::CaptureStderr();
  Feed(recorder, FixtureImage(1, kT0));
  recorder.Flush();
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(log, HasSubstr("cannot write the pull report"));
  EXPECT_EQ(Sample(metrics.Expose(), "zsnap_reports_dropped_total"), 1);
}

}  // namespace
}  // namespace zsnap::plugin
