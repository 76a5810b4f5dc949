// Server: a gRPC server for one service on a unix socket, the way containerd dials proxy
// plugins (insecure credentials, 16 MiB messages; containerd-api.md §1.1).
//
// Start() prepares the socket path (parent directories created 0700; a stale socket from a
// previous run removed, anything else at that path refused; a socket another live server
// answers on refused), binds and starts serving. Shutdown() stops accepting, lets in-flight
// RPCs finish until the grace period ends, then cancels them; the socket file is removed.
//
// Ownership: borrows the service, which must outlive the Server.
// Thread safety: Shutdown() and Wait() may be called from any thread, Shutdown() more than
// once. The destructor shuts down immediately if nobody did.
#pragma once

#include <grpcpp/server.h>
#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace zsnap::plugin {

inline constexpr int kMaxMessageBytes = 16 << 20;

// mkdir -p the socket's directory (new levels 0700) and remove a stale socket at `address`.
// FailedPrecondition if `address` is not a socket or a server answers on it.
absl::Status PrepareSocketPath(const std::string& address);

class Server {
 public:
  // `interceptors` (e.g. request timing, grpc_metrics.h) see every call, in order.
  static absl::StatusOr<std::unique_ptr<Server>> Start(
      const std::string& address, grpc::Service& service,
      std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
          interceptors = {});
  ~Server();

  void Shutdown(absl::Duration grace);
  // Blocks until the server has shut down.
  void Wait();
  const std::string& address() const { return address_; }

 private:
  Server(std::string address, std::unique_ptr<grpc::Server> server)
      : address_(std::move(address)), server_(std::move(server)) {}

  const std::string address_;
  const std::unique_ptr<grpc::Server> server_;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace zsnap::plugin
