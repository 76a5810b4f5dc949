#include "plugin/telemetry.h"

#include <grpcpp/grpcpp.h>

#include "plugin/grpc_metrics.h"
#include "plugin/logging.h"
#include "spdlog/spdlog.h"

namespace zsnap::plugin {

Telemetry::Telemetry() : metrics_(BuildInfo{ZSNAP_VERSION, grpc::Version()}) {}

Telemetry::~Telemetry() { Stop(); }

absl::StatusOr<std::unique_ptr<Telemetry>> Telemetry::Start(const Config& config) {
  std::unique_ptr<Telemetry> t(new Telemetry());
  if (config.reports.keep > 0) {
    const std::string dir = ReportsDir(config.root);
    absl::StatusOr<std::unique_ptr<ReportStore>> store =
        ReportStore::Open(dir, config.reports.keep);
    if (store.ok()) {
      t->reports_ = *std::move(store);
    } else {
      // The history is a convenience; the snapshotter must serve without it.
      LogEvent(spdlog::level::err, "reports_disabled",
               {{"dir", dir}, {"error", store.status().message()}});
    }
  }
  t->recorder_ = std::make_unique<PullRecorder>(t->metrics_, t->reports_.get());
  if (!config.metrics.address.empty()) {
    Metrics* metrics = &t->metrics_;
    absl::StatusOr<std::unique_ptr<MetricsServer>> server =
        MetricsServer::Start(config.metrics.address, [metrics] { return metrics->Expose(); });
    if (!server.ok()) return server.status();
    t->server_ = *std::move(server);
    LogEvent(spdlog::level::info, "metrics_serving", {{"address", t->server_->address()}});
  }
  return t;
}

InterceptorFactories Telemetry::GrpcInterceptors() {
  InterceptorFactories factories;
  factories.push_back(std::make_unique<GrpcMetricsInterceptorFactory>(metrics_));
  return factories;
}

void Telemetry::Stop() {
  if (server_ != nullptr) server_->Stop();
  if (recorder_ != nullptr) recorder_->Flush();
}

}  // namespace zsnap::plugin
