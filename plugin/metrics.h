// Metrics: zsnap's Prometheus metrics. One prometheus-cpp registry (Debian's prometheus-cpp-dev,
// core library only) holds every zsnap_* family; the Record* functions turn the remote path's
// timing records (unpack/pull_report.h) and gRPC request outcomes into observations, and
// Expose() renders the text exposition format 0.0.4 that MetricsServer serves on /metrics.
//
//   zsnap_layer_stage_duration_seconds{codec,stage}  histogram, layers that committed ok;
//       stage = queue | ttfb | fetch | decode | extract | write | verify | commit | total
//   zsnap_image_pull_duration_seconds{outcome}       histogram, first Prepare -> last commit
//   zsnap_fetched_bytes_total{codec}                 counter, compressed bytes from registries
//   zsnap_unpacked_bytes_total{codec}                counter, tar bytes decoded and applied
//   zsnap_layers_total{codec,outcome}                counter, ok | failed | abandoned
//   zsnap_layer_fetch_retries_total{codec}           counter, resumed or re-sent requests
//   zsnap_fallbacks_total{reason}                    counter, Prepares handed back to
//       containerd's own pull path; the reason is the failure class (registry, digest, ...)
//   zsnap_layers_in_flight                           gauge
//   zsnap_grpc_request_duration_seconds{method,code} histogram, Snapshots API requests
//   zsnap_reports_dropped_total                      counter, image reports not kept
//   zsnap_build_info{version,grpc_version}           gauge, always 1
//
// Every label value comes from a small closed set (unknown values become "other"): nothing
// the registry or containerd sends can grow the number of series without bound.
//
// Thread safety: every member function may be called concurrently from any thread
// (prometheus-cpp's families and metrics synchronise themselves).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "unpack/pull_report.h"

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
template <typename T>
class Family;
}  // namespace prometheus

namespace zsnap::plugin {

// The Content-Type of Expose()'s output.
inline constexpr char kMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";

struct BuildInfo {
  std::string version;
  std::string grpc_version;
};

// Bucket upper bounds (seconds). Stages run from microseconds (a cached commit) to minutes
// (a multi-GiB layer on a slow link); gRPC requests from ~100 us (Stat) to however long a
// Prepare waits for a remote layer.
const std::vector<double>& StageBuckets();
const std::vector<double>& ImagePullBuckets();
const std::vector<double>& GrpcBuckets();

class Metrics {
 public:
  explicit Metrics(const BuildInfo& build);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // A layer finished: its outcome, bytes and retries are counted; an ok layer's stages are
  // observed (a failed layer's partial stages would only blur the distributions).
  void RecordLayer(const unpack::LayerRecord& record);
  // An image pull finished: its wall time by outcome.
  void RecordImage(const unpack::ImageRecord& record);
  void RecordFallback(std::string_view reason);
  void AddInFlight(int delta);
  // `method` is the full gRPC method ("/containerd.services.snapshots.v1.Snapshots/Prepare");
  // `code` a grpc::StatusCode value.
  void RecordGrpc(std::string_view method, int code, double seconds);
  void RecordReportDropped();

  // The text exposition of every metric (format 0.0.4).
  std::string Expose() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Histogram>& stage_;
  prometheus::Family<prometheus::Histogram>& image_;
  prometheus::Family<prometheus::Counter>& fetched_bytes_;
  prometheus::Family<prometheus::Counter>& unpacked_bytes_;
  prometheus::Family<prometheus::Counter>& layers_;
  prometheus::Family<prometheus::Counter>& retries_;
  prometheus::Family<prometheus::Counter>& fallbacks_;
  prometheus::Gauge& in_flight_;
  prometheus::Family<prometheus::Histogram>& grpc_;
  prometheus::Counter& reports_dropped_;
};

// The bounded label values, exposed for tests.
std::string CodecLabel(const unpack::LayerRecord& record);  // gzip | zstd | plain | unknown
std::string FallbackReasonLabel(std::string_view reason);   // a known reason, else "other"
std::string GrpcMethodLabel(std::string_view method);       // "Prepare", ..., else "other"

}  // namespace zsnap::plugin
