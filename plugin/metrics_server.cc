#include "plugin/metrics_server.h"

#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "plugin/metrics.h"
#include "plugin/server.h"
#include "spdlog/spdlog.h"

namespace zsnap::plugin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

constexpr std::string_view kUnixScheme = "unix://";
constexpr uint32_t kMaxHeaderBytes = 8 << 10;
constexpr auto kIdleTimeout = std::chrono::seconds(30);

absl::string_view A(std::string_view s) { return {s.data(), s.size()}; }

absl::Status BadAddress(std::string_view address, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(
      "metrics address \"", A(address), "\": ", why,
      " (want IP:PORT such as 127.0.0.1:9464 or [::1]:9464, or unix:///absolute/path)"));
}

// State the io thread's coroutines share; touched only on that thread.
struct Shared {
  MetricsServer::Render render;
  int active = 0;
};

http::response<http::string_body> Respond(const http::request<http::empty_body>& req,
                                          const Shared& shared) {
  http::response<http::string_body> res;
  res.version(req.version());
  res.set(http::field::server, "zsnap");
  std::string_view target(req.target().data(), req.target().size());
  target = target.substr(0, target.find('?'));
  if (target != "/metrics") {
    res.result(http::status::not_found);
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = "not found; metrics are at /metrics\n";
  } else if (req.method() != http::verb::get) {
    res.result(http::status::method_not_allowed);
    res.set(http::field::allow, "GET");
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = "only GET\n";
  } else {
    res.result(http::status::ok);
    res.set(http::field::content_type, kMetricsContentType);
    res.body() = shared.render();
  }
  res.prepare_payload();
  return res;
}

template <typename Protocol>
asio::awaitable<void> Session(typename Protocol::socket socket, Shared& shared) {
  beast::basic_stream<Protocol> stream(std::move(socket));
  beast::flat_buffer buffer;
  beast::error_code ec;
  for (;;) {
    http::request_parser<http::empty_body> parser;
    parser.header_limit(kMaxHeaderBytes);
    stream.expires_after(kIdleTimeout);
    co_await http::async_read(stream, buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;  // closed by the peer, idle, or not HTTP we accept: just close
    const http::request<http::empty_body>& req = parser.get();
    http::response<http::string_body> res = Respond(req, shared);
    res.keep_alive(req.keep_alive());
    stream.expires_after(kIdleTimeout);
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || res.need_eof()) break;
  }
  stream.socket().shutdown(asio::socket_base::shutdown_send, ec);
  --shared.active;
}

template <typename Protocol>
asio::awaitable<void> AcceptLoop(typename Protocol::acceptor& acceptor, Shared& shared) {
  asio::steady_timer backoff(acceptor.get_executor());
  for (;;) {
    beast::error_code ec;
    typename Protocol::socket socket =
        co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // Out of file descriptors and the like: say so, and do not spin.
      spdlog::warn("metrics server: accept: {}", ec.message());
      backoff.expires_after(std::chrono::milliseconds(200));
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    if (shared.active >= kMaxMetricsConnections) {
      socket.close(ec);
      continue;
    }
    ++shared.active;
    asio::co_spawn(acceptor.get_executor(), Session<Protocol>(std::move(socket), shared),
                   asio::detached);
  }
}

template <typename Acceptor, typename Endpoint>
absl::Status Listen(Acceptor& acceptor, const Endpoint& endpoint, absl::string_view what,
                    bool reuse) {
  beast::error_code ec;
  const auto fail = [&](absl::string_view op) -> absl::Status {
    return absl::UnavailableError(
        absl::StrCat("metrics server: ", op, " ", what, ": ", ec.message()));
  };
  if (acceptor.open(endpoint.protocol(), ec)) return fail("open");
  if (reuse && acceptor.set_option(asio::socket_base::reuse_address(true), ec)) {
    return fail("setsockopt");
  }
  if (acceptor.bind(endpoint, ec)) return fail("bind");
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec)) return fail("listen");
  return absl::OkStatus();
}

}  // namespace

struct MetricsServer::Impl {
  Shared shared;  // before io: coroutine frames refer to it until io is destroyed
  std::optional<asio::io_context> io{std::in_place, 1};
  std::optional<asio::ip::tcp::acceptor> tcp;
  std::optional<asio::local::stream_protocol::acceptor> unix_socket;
  std::string address;
  std::string socket_path;  // unix: removed on Stop
  std::once_flag stopped;
  std::jthread thread;
};

absl::StatusOr<MetricsAddress> ParseMetricsAddress(std::string_view address) {
  MetricsAddress parsed;
  if (address.starts_with(kUnixScheme)) {
    parsed.kind = MetricsAddress::Kind::kUnix;
    parsed.path = std::string(address.substr(kUnixScheme.size()));
    if (parsed.path.empty() || parsed.path.front() != '/' || parsed.path.back() == '/') {
      return BadAddress(address, "the socket path must be absolute");
    }
    if (parsed.path.size() > 107) {
      return BadAddress(address,
                        "the socket path is longer than the 107 bytes a unix socket allows");
    }
    return parsed;
  }
  std::string_view host, port;
  if (address.starts_with('[')) {
    const size_t close = address.find("]:");
    if (close == std::string_view::npos) return BadAddress(address, "missing \"]:PORT\"");
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string_view::npos) return BadAddress(address, "missing \":PORT\"");
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return BadAddress(address, "an IPv6 address must be in brackets");
    }
  }
  uint32_t port_number = 0;
  if (port.empty() || port.find_first_not_of("0123456789") != std::string_view::npos ||
      !absl::SimpleAtoi(A(port), &port_number) || port_number > 65535) {
    return BadAddress(address, "the port must be a number in 0..65535");
  }
  beast::error_code ec;
  asio::ip::make_address(std::string(host), ec);
  if (ec) return BadAddress(address, "the host must be an IP address");
  parsed.host = std::string(host);
  parsed.port = static_cast<uint16_t>(port_number);
  return parsed;
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(std::string_view address,
                                                                    Render render) {
  absl::StatusOr<MetricsAddress> parsed = ParseMetricsAddress(address);
  if (!parsed.ok()) return parsed.status();
  auto impl = std::make_unique<Impl>();
  impl->shared.render = std::move(render);

  if (parsed->kind == MetricsAddress::Kind::kUnix) {
    if (absl::Status s = PrepareSocketPath(parsed->path); !s.ok()) return s;
    impl->unix_socket.emplace(*impl->io);
    // 0660 whatever the umask, bound race-free beside the final path (server.h).
    absl::Status bound =
        BindUnixSocket(parsed->path, kDefaultSocketMode, [&](const std::string& tmp) {
          const asio::local::stream_protocol::endpoint endpoint(tmp);
          return Listen(*impl->unix_socket, endpoint, parsed->path, false);
        });
    if (!bound.ok()) return bound;
    impl->socket_path = parsed->path;
    impl->address = absl::StrCat(A(kUnixScheme), parsed->path);
    asio::co_spawn(*impl->io,
                   AcceptLoop<asio::local::stream_protocol>(*impl->unix_socket, impl->shared),
                   asio::detached);
  } else {
    impl->tcp.emplace(*impl->io);
    const asio::ip::address ip = asio::ip::make_address(parsed->host);
    const asio::ip::tcp::endpoint endpoint(ip, parsed->port);
    if (absl::Status s = Listen(*impl->tcp, endpoint, A(address), true); !s.ok()) return s;
    beast::error_code ec;
    const uint16_t port = impl->tcp->local_endpoint(ec).port();
    impl->address = ip.is_v6() ? absl::StrCat("[", ip.to_string(), "]:", port)
                               : absl::StrCat(ip.to_string(), ":", port);
    asio::co_spawn(*impl->io, AcceptLoop<asio::ip::tcp>(*impl->tcp, impl->shared), asio::detached);
  }
  Impl* raw = impl.get();
  impl->thread = std::jthread([raw] { raw->io->run(); });
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
}

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsServer::~MetricsServer() { Stop(); }

void MetricsServer::Stop() {
  std::call_once(impl_->stopped, [this] {
    impl_->io->stop();
    if (impl_->thread.joinable()) impl_->thread.join();
    // Destroying the io_context destroys the suspended coroutines, whose frames own the
    // connections' sockets: every connection is closed here.
    impl_->tcp.reset();
    impl_->unix_socket.reset();
    impl_->io.reset();
    if (!impl_->socket_path.empty() && unlink(impl_->socket_path.c_str()) != 0 && errno != ENOENT) {
      spdlog::warn("cannot remove metrics socket {}: {}", impl_->socket_path, std::strerror(errno));
    }
  });
}

const std::string& MetricsServer::address() const { return impl_->address; }

}  // namespace zsnap::plugin
