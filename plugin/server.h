// Server: a gRPC server for one service on a unix socket, the way containerd dials proxy
// plugins (insecure credentials, 16 MiB messages; containerd-api.md §1.1).
//
// Start() prepares the socket path (parent directories created 0700; a stale socket from a
// previous run removed, anything else at that path refused; a socket another live server
// answers on refused), binds and starts serving. Shutdown() stops accepting, lets in-flight
// RPCs finish until the grace period ends, then cancels them; the socket file is removed.
//
// The socket file gets exactly `socket_mode` (default 0660: owner root, the daemon's user, and
// its group; containerd runs as root), never what the umask leaves: BindUnixSocket binds in
// a fresh 0700 directory, chmods there and renames into place, so no other user can ever
// connect through a looser mode.
//
// Ownership: borrows the service, which must outlive the Server.
// Thread safety: Shutdown() and Wait() may be called from any thread, Shutdown() more than
// once. The destructor shuts down immediately if nobody did.
#pragma once

#include <grpcpp/server.h>
#include <grpcpp/support/server_interceptor.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace zsnap::plugin {

inline constexpr int kMaxMessageBytes = 16 << 20;

// mkdir -p the socket's directory (new levels 0700) and remove a stale socket at `address`.
// FailedPrecondition if `address` is not a socket or a server answers on it.
absl::Status PrepareSocketPath(const std::string& address);

inline constexpr mode_t kDefaultSocketMode = 0660;

// Creates the listening unix socket `address` with exactly `mode`, race-free and without
// touching the process-wide umask: `bind_at(tmp)` must bind (and may listen) a socket at
// `tmp`, a path inside a new 0700 directory next to `address`, which no other user can
// reach; the socket is then chmod-ed to `mode` and renamed onto `address` (a bound unix
// socket keeps working under its new name), and the directory removed. Call after
// PrepareSocketPath. InvalidArgument if the temporary path would not fit in sun_path.
absl::Status BindUnixSocket(const std::string& address, mode_t mode,
                            absl::FunctionRef<absl::Status(const std::string& tmp)> bind_at);

class Server {
 public:
  // `interceptors` (e.g. request timing, grpc_metrics.h) see every call, in order.
  static absl::StatusOr<std::unique_ptr<Server>> Start(
      const std::string& address, grpc::Service& service,
      std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
          interceptors = {},
      mode_t socket_mode = kDefaultSocketMode);
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
