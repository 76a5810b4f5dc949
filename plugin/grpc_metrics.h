// GrpcMetricsInterceptorFactory: a grpc++ server interceptor that times every request and
// records it in Metrics (zsnap_grpc_request_duration_seconds{method,code}).
//
// Why an interceptor rather than timing in snapshots_service.cc: the service stays the thin
// adapter STYLE.md asks for (it knows nothing of Prometheus), every method of every service
// registered on the server is covered by one piece of code (including ones added later and the
// ones a service leaves UNIMPLEMENTED), and the time includes what the handler's own clock
// cannot see (response serialisation and List's streamed writes up to the final status).
//
// The clock starts when gRPC creates the interceptor for a new call (before the request is
// read) and stops at PRE_SEND_STATUS, when the status code is known.
//
// Ownership: borrows `metrics`, which must outlive the server.
// Thread safety: gRPC calls the factory and interceptors from its threads; Metrics is
// thread-safe and each interceptor belongs to one call.
#pragma once

#include <grpcpp/support/server_interceptor.h>

#include <memory>

#include "plugin/metrics.h"

namespace zsnap::plugin {

class GrpcMetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit GrpcMetricsInterceptorFactory(Metrics& metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  Metrics& metrics_;
};

}  // namespace zsnap::plugin
