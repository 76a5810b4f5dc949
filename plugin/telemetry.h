// Telemetry: what the daemon records about its own work, built from the config in one place:
// the Prometheus Metrics, the pull report history (ReportStore, <root>/reports, [reports]),
// the PullRecorder (the unpack::PullObserver the remote puller reports to), the gRPC
// interceptor timing every request, and the /metrics server ([metrics] address).
//
// Lifetime: Start() after the snapshotter has opened the root (the history lives under it);
// install GrpcInterceptors() on the gRPC server; Stop() after the gRPC server and the puller
// have stopped (it stops the metrics server and writes the reports still queued).
// Thread safety: pull_observer() and metrics() are safe from any thread; Start/Stop are called
// by the daemon's main thread.
#pragma once

#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "plugin/config.h"
#include "plugin/metrics.h"
#include "plugin/metrics_server.h"
#include "plugin/pull_recorder.h"
#include "plugin/report_store.h"

namespace zsnap::plugin {

using InterceptorFactories =
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>;

class Telemetry {
 public:
  // Fails only if the configured metrics address cannot be served; a report history that
  // cannot be opened is logged and the daemon runs without one.
  static absl::StatusOr<std::unique_ptr<Telemetry>> Start(const Config& config);
  ~Telemetry();

  unpack::PullObserver* pull_observer() { return recorder_.get(); }
  Metrics& metrics() { return metrics_; }
  InterceptorFactories GrpcInterceptors();
  void Stop();

 private:
  Telemetry();

  Metrics metrics_;
  std::unique_ptr<ReportStore> reports_;
  std::unique_ptr<PullRecorder> recorder_;
  std::unique_ptr<MetricsServer> server_;
};

}  // namespace zsnap::plugin
