// MetricsServer: a small HTTP/1.1 server (Boost.Beast) for Prometheus scrapes. `GET /metrics`
// answers 200 with the body `render()` returns (text exposition format 0.0.4); other paths are
// 404, other methods on /metrics 405. Keep-alive as the client asks; at most
// kMaxMetricsConnections at once (more are closed on accept); requests larger than 8 KiB of
// header, and connections idle for 30 s, are closed.
//
// Addresses (the [metrics] address of the config):
//   "127.0.0.1:9464", "[::1]:9464"   TCP on an IP literal (no name resolution); port 0 lets
//                                    the kernel choose: address() says which it bound
//   "unix:///run/zsnap/metrics.sock" a unix socket (its directory created 0700, a stale
//                                    socket replaced, a live one refused; removed on Stop)
// Loopback is the expected choice; any other IP exposes the metrics to that network.
//
// One thread runs the server's own io_context; render() is called on it.
// Ownership: `render` is copied; what it refers to must outlive the server.
// Thread safety: Stop() may be called from any thread, more than once; the destructor stops.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace zsnap::plugin {

inline constexpr int kMaxMetricsConnections = 32;

struct MetricsAddress {
  enum class Kind { kTcp, kUnix };
  Kind kind = Kind::kTcp;
  std::string host;  // kTcp: the IP literal, without brackets
  uint16_t port = 0;
  std::string path;  // kUnix: the absolute socket path
};

// InvalidArgument saying what is wrong with `address` and what is accepted.
absl::StatusOr<MetricsAddress> ParseMetricsAddress(std::string_view address);

class MetricsServer {
 public:
  using Render = std::function<std::string()>;

  // Binds, listens and starts serving on a new thread.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(std::string_view address,
                                                              Render render);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Stops accepting, closes every connection, joins the thread.
  void Stop();
  // What it listens on: "127.0.0.1:41234", "[::1]:41234" or "unix:///path".
  const std::string& address() const;

  struct Impl;

 private:
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace zsnap::plugin
