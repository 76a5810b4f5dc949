#include "plugin/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/plugin/pull_fixtures.h"

namespace zsnap::plugin {
namespace {

using testing::FixtureLayer;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::Sample;

constexpr char kSnapshots[] = "/containerd.services.snapshots.v1.Snapshots/";

// The whole exposition of a registry with a few observations, byte for byte: HELP/TYPE
// lines, label order and escaping, histogram _count/_sum/_bucket with cumulative counts and
// le="+Inf", and families without any series left out.
TEST(MetricsTest, ExpositionGolden) {
  Metrics m(BuildInfo{.version = "1.2.3 \"q\"\\\nx", .grpc_version = "1.51.1"});
  m.RecordFallback("registry");
  m.RecordFallback("registry");
  m.RecordFallback("something\nnew");
  m.AddInFlight(2);
  m.AddInFlight(-1);
  m.RecordGrpc(absl::StrCat(kSnapshots, "Prepare"), 5, 0.004);
  const std::string want =
      R"(# HELP zsnap_fallbacks_total Prepares with remote-snapshot labels handed back to containerd's own pull path, by reason.
# TYPE zsnap_fallbacks_total counter
zsnap_fallbacks_total{reason="other"} 1
zsnap_fallbacks_total{reason="registry"} 2
# HELP zsnap_reports_dropped_total Image pull reports not written to the history (queue full or write error).
# TYPE zsnap_reports_dropped_total counter
zsnap_reports_dropped_total 0
# HELP zsnap_layers_in_flight Layers being fetched and unpacked now.
# TYPE zsnap_layers_in_flight gauge
zsnap_layers_in_flight 1
# HELP zsnap_build_info The zsnap version and the gRPC it was built with.
# TYPE zsnap_build_info gauge
zsnap_build_info{grpc_version="1.51.1",version="1.2.3 \"q\"\\\nx"} 1
# HELP zsnap_grpc_request_duration_seconds Seconds zsnap took to answer a Snapshots API request, by method and gRPC status code.
# TYPE zsnap_grpc_request_duration_seconds histogram
zsnap_grpc_request_duration_seconds_count{code="NOT_FOUND",method="Prepare"} 1
zsnap_grpc_request_duration_seconds_sum{code="NOT_FOUND",method="Prepare"} 0.004
zsnap_grpc_request_duration_seconds_bucket{code="NOT_FOUND",method="Prepare",le="0.0001"} 0
zsnap_grpc_request_duration_seconds_bucket{code="NOT_FOUND",method="Prepare",le="0.00025"} 0
zsnap_grpc_request_duration_seconds_bucket{code="NOT_FOUND",method="Prepare",le="0.0005"} 0
zsnap_grpc_request_duration_seconds_bucket{code="NOT_FOUND",method="Prepare",le="0.001"} 0
zsnap_grpc_request_duration_seconds_bucket{code="NOT_FOUND",method="Prepare",le="0.0025"} 0
zsnap_grpc_request_duration_seconds_bucket{code="NOT_FOUND",method="Prepare",le="0.005"} 1
zsnap_grpc_request_duration_seconds_bucket{code="NOT_FOUND",method="Prepare",le="0.01"} 1
zsnap_grpc_request_duration_seconds_bucket{code="NOT_FOUND",method="Prepare",le="0.025"} 1
zsnap_grpc_request_duration_seconds_bucket{code="NOT_FOUND",method="Prepare",le="0.05"} 1
zsnap_grpc_request_duration_seconds_bucket{code="NOT_FOUND",method="Prepare",le="0.1"} 1
zsnap_grpc_request_duration_seconds_bucket{code="NOT_FOUND",method="Prepare",le="0.25"} 1
zsnap_grpc_request_duration_seconds_bucket{code="NOT_FOUND",method="Prepare",le="0.5"} 1
zsnap_grpc_request_duration_seconds_bucket{code="NOT_FOUND",method="Prepare",le="1"} 1
zsnap_grpc_request_duration_seconds_bucket{code="NOT_FOUND",method="Prepare",le="2.5"} 1
zsnap_grpc_request_duration_seconds_bucket{code="NOT_FOUND",method="Prepare",le="5"} 1
zsnap_grpc_request_duration_seconds_bucket{code="NOT_FOUND",method="Prepare",le="10"} 1
zsnap_grpc_request_duration_seconds_bucket{code="NOT_FOUND",method="Prepare",le="30"} 1
zsnap_grpc_request_duration_seconds_bucket{code="NOT_FOUND",method="Prepare",le="60"} 1
zsnap_grpc_request_duration_seconds_bucket{code="NOT_FOUND",method="Prepare",le="120"} 1
zsnap_grpc_request_duration_seconds_bucket{code="NOT_FOUND",method="Prepare",le="+Inf"} 1
)";
  EXPECT_EQ(m.Expose(), want);
}

// Buckets are upper-inclusive ("le") and cumulative; a value past the last bound lands only
// in +Inf; _sum and _count are exact.
TEST(MetricsTest, HistogramBucketMaths) {
  Metrics m(BuildInfo{});
  for (double queue : {0.001, 0.0011, 0.5, 1000.0}) {
    unpack::LayerRecord l = FixtureLayer(0, "zstd");
    l.queue_wait_s = queue;
    m.RecordLayer(l);
  }
  const std::string text = m.Expose();
  const std::string series = "zsnap_layer_stage_duration_seconds";
  const std::string labels = R"(codec="zstd",stage="queue")";
  const auto bucket = [&](const std::string& le) {
    return Sample(text, absl::StrCat(series, "_bucket{", labels, ",le=\"", le, "\"}"));
  };
  EXPECT_EQ(bucket("0.001"), 1);   // 0.001 <= 0.001
  EXPECT_EQ(bucket("0.0025"), 2);  // + 0.0011
  EXPECT_EQ(bucket("0.25"), 2);
  EXPECT_EQ(bucket("0.5"), 3);  // + 0.5 exactly on the bound
  EXPECT_EQ(bucket("500"), 3);
  EXPECT_EQ(bucket("+Inf"), 4);  // + 1000
  EXPECT_EQ(Sample(text, absl::StrCat(series, "_count{", labels, "}")), 4);
  EXPECT_DOUBLE_EQ(Sample(text, absl::StrCat(series, "_sum{", labels, "}")),
                   0.001 + 0.0011 + 0.5 + 1000.0);
  // Buckets never decrease, for every bound.
  double last = 0;
  for (double b : StageBuckets()) {
    const double v = bucket(absl::StrCat(b));
    EXPECT_GE(v, last) << b;
    last = v;
  }
}

TEST(MetricsTest, LayerCountersAndStagesOnlyForOkLayers) {
  Metrics m(BuildInfo{});
  unpack::LayerRecord ok = FixtureLayer(0);
  unpack::LayerRecord failed = FixtureLayer(1);
  failed.outcome = "failed";
  failed.error = "registry: 503";
  failed.fetch.retries = 3;
  failed.unpack.codec.clear();  // failed before the codec was known: the media type tells
  m.RecordLayer(ok);
  m.RecordLayer(failed);
  const std::string text = m.Expose();
  EXPECT_EQ(Sample(text, R"(zsnap_layers_total{codec="gzip",outcome="ok"})"), 1);
  EXPECT_EQ(Sample(text, R"(zsnap_layers_total{codec="gzip",outcome="failed"})"), 1);
  EXPECT_EQ(Sample(text, R"(zsnap_layer_fetch_retries_total{codec="gzip"})"), 3);
  EXPECT_EQ(Sample(text, R"(zsnap_fetched_bytes_total{codec="gzip"})"),
            static_cast<double>(ok.fetch.bytes + failed.fetch.bytes));
  EXPECT_EQ(Sample(text, R"(zsnap_unpacked_bytes_total{codec="gzip"})"),
            static_cast<double>(ok.unpack.bytes_out + failed.unpack.bytes_out));
  EXPECT_EQ(Sample(text, R"(zsnap_layer_stage_duration_seconds_count{codec="gzip",stage="total"})"),
            1);
  for (const char* stage :
       {"queue", "ttfb", "fetch", "decode", "extract", "write", "verify", "commit", "total"}) {
    EXPECT_THAT(text, HasSubstr(absl::StrCat("stage=\"", stage, "\"")));
  }
}

TEST(MetricsTest, ImagePullsByOutcome) {
  Metrics m(BuildInfo{});
  unpack::ImageRecord r = testing::FixtureImage(2, 1);
  m.RecordImage(r);
  r.outcome = "partial";
  r.wall_s = 2;
  m.RecordImage(r);
  const std::string text = m.Expose();
  EXPECT_EQ(Sample(text, R"(zsnap_image_pull_duration_seconds_count{outcome="ok"})"), 1);
  EXPECT_EQ(Sample(text, R"(zsnap_image_pull_duration_seconds_sum{outcome="partial"})"), 2);
}

TEST(MetricsTest, LabelValuesStayInClosedSets) {
  unpack::LayerRecord l = FixtureLayer(0);
  l.unpack.codec.clear();
  l.media_type = "application/vnd.docker.image.rootfs.diff.tar.gzip";
  EXPECT_EQ(CodecLabel(l), "gzip");
  l.media_type = "application/vnd.oci.image.layer.v1.tar";
  EXPECT_EQ(CodecLabel(l), "plain");
  l.media_type = "application/x-surprise";
  EXPECT_EQ(CodecLabel(l), "unknown");
  EXPECT_EQ(FallbackReasonLabel("digest"), "digest");
  EXPECT_EQ(FallbackReasonLabel("registry: 503 from 10.0.0.1"), "other");
  EXPECT_EQ(GrpcMethodLabel(absl::StrCat(kSnapshots, "Cleanup")), "Cleanup");
  EXPECT_EQ(GrpcMethodLabel(absl::StrCat(kSnapshots, "Bogus")), "other");
  EXPECT_EQ(GrpcMethodLabel("/grpc.health.v1.Health/Check"), "other");

  Metrics m(BuildInfo{});
  m.RecordGrpc("/x.Y/Z", 99, 0.1);  // not a gRPC code
  EXPECT_THAT(m.Expose(), HasSubstr(R"(_count{code="UNKNOWN",method="other"} 1)"));
  l.outcome = "exploded";
  m.RecordLayer(l);
  EXPECT_THAT(m.Expose(), HasSubstr(R"(zsnap_layers_total{codec="unknown",outcome="other"} 1)"));
  EXPECT_THAT(m.Expose(), Not(HasSubstr("exploded")));
}

// Many threads record while another scrapes; nothing is lost or torn.
TEST(MetricsTest, ConcurrentRecordingAndScraping) {
  Metrics m(BuildInfo{});
  constexpr int kThreads = 8, kRounds = 500;
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    while (!done.load()) EXPECT_THAT(m.Expose(), HasSubstr("zsnap_build_info"));
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&m, t] {
      for (int i = 0; i < kRounds; ++i) {
        m.AddInFlight(1);
        m.RecordGrpc(absl::StrCat(kSnapshots, t % 2 ? "Stat" : "Prepare"), 0, 0.001);
        m.RecordLayer(FixtureLayer(t % 3, t % 2 ? "zstd" : "gzip"));
        m.RecordFallback("unpack");
        m.AddInFlight(-1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  done = true;
  scraper.join();
  const std::string text = m.Expose();
  EXPECT_EQ(Sample(text, "zsnap_layers_in_flight"), 0);
  EXPECT_EQ(Sample(text, R"(zsnap_fallbacks_total{reason="unpack"})"), kThreads * kRounds);
  EXPECT_EQ(
      Sample(text, R"(zsnap_grpc_request_duration_seconds_count{code="OK",method="Stat"})") +
          Sample(text, R"(zsnap_grpc_request_duration_seconds_count{code="OK",method="Prepare"})"),
      kThreads * kRounds);
  EXPECT_EQ(Sample(text, R"(zsnap_layers_total{codec="gzip",outcome="ok"})") +
                Sample(text, R"(zsnap_layers_total{codec="zstd",outcome="ok"})"),
            kThreads * kRounds);
}

}  // namespace
}  // namespace zsnap::plugin
