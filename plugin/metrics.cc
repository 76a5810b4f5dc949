#include "plugin/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <array>
#include <utility>

#include "absl/status/status.h"

namespace zsnap::plugin {
namespace {

constexpr std::string_view kSnapshotsService = "/containerd.services.snapshots.v1.Snapshots/";

constexpr std::array<std::string_view, 10> kSnapshotsMethods = {
    "Prepare", "View", "Mounts", "Commit", "Remove", "Stat", "Update", "List", "Usage", "Cleanup"};

constexpr std::array<std::string_view, 7> kFallbackReasons = {
    "registry", "digest", "unpack", "labels", "config", "commit", "internal"};

// prometheus-cpp's TextSerializer escapes label values but not HELP text: every HELP here is
// a constant without backslashes or newlines.
prometheus::Family<prometheus::Histogram>& HistogramFamily(prometheus::Registry& r,
                                                           const char* name, const char* help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r);
}
prometheus::Family<prometheus::Counter>& CounterFamily(prometheus::Registry& r, const char* name,
                                                       const char* help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r);
}
prometheus::Family<prometheus::Gauge>& GaugeFamily(prometheus::Registry& r, const char* name,
                                                   const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r);
}

std::string OneOf(std::string_view value, std::initializer_list<std::string_view> allowed) {
  for (std::string_view a : allowed) {
    if (value == a) return std::string(value);
  }
  return "other";
}

}  // namespace

const std::vector<double>& StageBuckets() {
  static const std::vector<double> kBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                               0.1,   0.25,   0.5,   1,    2.5,   5,
                                               10,    25,     50,    100,  250,   500};
  return kBuckets;
}

const std::vector<double>& ImagePullBuckets() {
  static const std::vector<double> kBuckets = {0.1, 0.25, 0.5, 1,   2.5, 5,   10,
                                               25,  50,   100, 250, 500, 1000};
  return kBuckets;
}

const std::vector<double>& GrpcBuckets() {
  static const std::vector<double> kBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                               0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5,
                                               5,      10,      30,     60,    120};
  return kBuckets;
}

std::string CodecLabel(const unpack::LayerRecord& record) {
  const std::string& codec = record.unpack.codec;
  if (codec == "gzip" || codec == "zstd" || codec == "plain") return codec;
  // The layer failed before its codec was detected: the media type says what it would be.
  const std::string& mt = record.media_type;
  if (mt.ends_with("+gzip") || mt.ends_with(".gzip")) return "gzip";
  if (mt.ends_with("+zstd") || mt.ends_with(".zstd")) return "zstd";
  if (mt.ends_with(".tar") || mt.ends_with("tar.v1")) return "plain";
  return "unknown";
}

std::string FallbackReasonLabel(std::string_view reason) {
  for (std::string_view r : kFallbackReasons) {
    if (reason == r) return std::string(reason);
  }
  return "other";
}

std::string GrpcMethodLabel(std::string_view method) {
  if (!method.starts_with(kSnapshotsService)) return "other";
  method.remove_prefix(kSnapshotsService.size());
  for (std::string_view m : kSnapshotsMethods) {
    if (method == m) return std::string(method);
  }
  return "other";
}

Metrics::Metrics(const BuildInfo& build)
    : registry_(std::make_shared<prometheus::Registry>()),
      stage_(HistogramFamily(*registry_, "zsnap_layer_stage_duration_seconds",
                             "Seconds a layer zsnap pulled and committed spent in each stage: "
                             "queue wait, time to first byte, fetch, decode, extract, write, "
                             "verify (busy time), commit and total.")),
      image_(HistogramFamily(*registry_, "zsnap_image_pull_duration_seconds",
                             "Wall seconds of an image pull zsnap served, from the first Prepare "
                             "to the last layer committed.")),
      fetched_bytes_(CounterFamily(*registry_, "zsnap_fetched_bytes_total",
                                   "Compressed layer bytes received from registries.")),
      unpacked_bytes_(CounterFamily(*registry_, "zsnap_unpacked_bytes_total",
                                    "Uncompressed tar bytes decoded and applied to snapshots.")),
      layers_(CounterFamily(*registry_, "zsnap_layers_total",
                            "Layers zsnap finished, by outcome (ok, failed, abandoned).")),
      retries_(CounterFamily(*registry_, "zsnap_layer_fetch_retries_total",
                             "Layer fetch requests resumed or re-sent.")),
      fallbacks_(CounterFamily(*registry_, "zsnap_fallbacks_total",
                               "Prepares with remote-snapshot labels handed back to containerd's "
                               "own pull path, by reason.")),
      in_flight_(GaugeFamily(*registry_, "zsnap_layers_in_flight",
                             "Layers being fetched and unpacked now.")
                     .Add({})),
      grpc_(HistogramFamily(*registry_, "zsnap_grpc_request_duration_seconds",
                            "Seconds zsnap took to answer a Snapshots API request, by method "
                            "and gRPC status code.")),
      reports_dropped_(CounterFamily(*registry_, "zsnap_reports_dropped_total",
                                     "Image pull reports not written to the history (queue full "
                                     "or write error).")
                           .Add({})) {
  GaugeFamily(*registry_, "zsnap_build_info", "The zsnap version and the gRPC it was built with.")
      .Add({{"version", build.version}, {"grpc_version", build.grpc_version}})
      .Set(1);
}

Metrics::~Metrics() = default;

void Metrics::RecordLayer(const unpack::LayerRecord& r) {
  const std::string codec = CodecLabel(r);
  const std::string outcome = OneOf(r.outcome, {"ok", "failed", "abandoned"});
  layers_.Add({{"codec", codec}, {"outcome", outcome}}).Increment();
  fetched_bytes_.Add({{"codec", codec}}).Increment(static_cast<double>(r.fetch.bytes));
  unpacked_bytes_.Add({{"codec", codec}}).Increment(static_cast<double>(r.unpack.bytes_out));
  if (r.fetch.retries > 0) retries_.Add({{"codec", codec}}).Increment(r.fetch.retries);
  if (outcome != "ok") return;
  const std::pair<const char*, double> stages[] = {
      {"queue", r.queue_wait_s},
      {"ttfb", r.fetch.ttfb_s},
      {"fetch", r.fetch.duration_s},
      {"decode", r.unpack.decode.busy_s},
      {"extract", r.unpack.extract.busy_s},
      {"write", r.unpack.write.busy_s},
      {"verify", r.unpack.verify.busy_s},
      {"commit", r.commit_s},
      {"total", r.total_s},
  };
  for (const auto& [stage, seconds] : stages) {
    stage_.Add({{"codec", codec}, {"stage", stage}}, StageBuckets()).Observe(seconds);
  }
}

void Metrics::RecordImage(const unpack::ImageRecord& r) {
  image_.Add({{"outcome", OneOf(r.outcome, {"ok", "partial", "failed"})}}, ImagePullBuckets())
      .Observe(r.wall_s);
}

void Metrics::RecordFallback(std::string_view reason) {
  fallbacks_.Add({{"reason", FallbackReasonLabel(reason)}}).Increment();
}

void Metrics::AddInFlight(int delta) { in_flight_.Increment(delta); }

void Metrics::RecordGrpc(std::string_view method, int code, double seconds) {
  const std::string code_name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  grpc_
      .Add({{"method", GrpcMethodLabel(method)},
            {"code", code_name.empty() ? "UNKNOWN" : code_name}},
           GrpcBuckets())
      .Observe(seconds);
}

void Metrics::RecordReportDropped() { reports_dropped_.Increment(); }

std::string Metrics::Expose() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace zsnap::plugin
