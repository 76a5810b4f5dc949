#include "unpack/http_client.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <limits>
#include <variant>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace zsnap::unpack {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

absl::string_view ToAbsl(std::string_view s) { return {s.data(), s.size()}; }

uint16_t DefaultPort(std::string_view scheme) { return scheme == "https" ? 443 : 80; }

bool IsIpAddress(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

absl::Status TransportError(const HttpRequest& request, std::string_view what,
                            const beast::error_code& ec) {
  std::string why = ec.message();
  if (ec == beast::error::timeout) why = "timed out";
  if (ec == http::error::partial_message) why = "connection closed before the end of the body";
  return absl::UnavailableError(absl::StrCat(ToAbsl(request.method), " ", request.url.String(),
                                             ": ", ToAbsl(what), ": ", why));
}

// Runs the asynchronous operation started by `start` to completion on `ioc` (on this thread)
// and returns its error code. Deadlines come from the stream's expiry.
template <class Start>
beast::error_code RunToCompletion(asio::io_context& ioc, Start&& start) {
  beast::error_code result;
  start([&result](beast::error_code ec, auto&&...) { result = ec; });
  ioc.restart();
  ioc.run();
  return result;
}

// One connection carrying one request; the response body is read through it.
class Connection final : public HttpResponse {
 public:
  // Beast's largest single socket read for a message body (read_size's cap).
  static constexpr size_t kBodyReadSize = 64 * 1024;

  Connection(const HttpRequest& request, HttpTimeouts timeouts)
      : request_(request), timeouts_(timeouts) {
    parser_.body_limit(std::numeric_limits<uint64_t>::max());
    parser_.header_limit(64 * 1024);
    if (request.method == "HEAD") parser_.skip(true);
  }

  absl::Status Open(const TlsOptions& tls, const std::string& user_agent) {
    const Url& url = request_.url;
    // Resolve (asio resolvers have no expiry of their own: bound the run instead).
    tcp::resolver resolver(ioc_);
    tcp::resolver::results_type endpoints;
    beast::error_code ec;
    bool resolved = false;
    resolver.async_resolve(url.host, std::to_string(url.port),
                           [&](beast::error_code e, tcp::resolver::results_type r) {
                             ec = e;
                             endpoints = std::move(r);
                             resolved = true;
                           });
    ioc_.restart();
    ioc_.run_for(timeouts_.connect);
    if (!resolved) {
      resolver.cancel();
      ioc_.restart();
      ioc_.run();
      ec = asio::error::timed_out;
    }
    if (ec) return TransportError(request_, "resolve " + url.host, ec);

    if (url.scheme == "https") {
      absl::Status s = MakeTlsStream(tls);
      if (!s.ok()) return s;
    } else {
      stream_.emplace<PlainStream>(ioc_);
    }
    beast::tcp_stream& lowest = Lowest();
    lowest.expires_after(timeouts_.connect);
    ec = RunToCompletion(ioc_, [&](auto h) { lowest.async_connect(endpoints, std::move(h)); });
    if (ec) return TransportError(request_, "connect", ec);

    if (auto* tls_stream = std::get_if<TlsStream>(&stream_)) {
      lowest.expires_after(timeouts_.connect);
      ec = RunToCompletion(ioc_, [&](auto h) {
        tls_stream->async_handshake(ssl::stream_base::client, std::move(h));
      });
      if (ec) return TransportError(request_, "TLS handshake", ec);
    }

    http::request<http::string_body> req;
    req.method(http::string_to_verb(request_.method));
    if (req.method() == http::verb::unknown) {
      return absl::InvalidArgumentError(absl::StrCat("unknown HTTP method ", request_.method));
    }
    req.target(url.target);
    req.version(11);
    req.set(http::field::host, url.Authority());
    req.set(http::field::user_agent, user_agent);
    for (const auto& [name, value] : request_.headers) req.insert(name, value);
    req.body() = request_.body;
    if (!request_.body.empty() || request_.method == "PUT" || request_.method == "POST" ||
        request_.method == "PATCH") {
      req.prepare_payload();
    }
    lowest.expires_after(timeouts_.io);
    ec = RunToCompletion(ioc_, [&](auto h) {
      WithStream([&](auto& s) { http::async_write(s, req, std::move(h)); });
    });
    if (ec) return TransportError(request_, "write request", ec);

    lowest.expires_after(timeouts_.io);
    ec = RunToCompletion(ioc_, [&](auto h) {
      WithStream([&](auto& s) { http::async_read_header(s, buffer_, parser_, std::move(h)); });
    });
    if (ec) return TransportError(request_, "read response header", ec);
    return absl::OkStatus();
  }

  int status() const override { return static_cast<int>(parser_.get().result_int()); }

  std::optional<std::string> Header(std::string_view name) const override {
    auto it = parser_.get().find(beast::string_view(name.data(), name.size()));
    if (it == parser_.get().end()) return std::nullopt;
    return std::string(it->value());
  }

  std::vector<std::string> Headers(std::string_view name) const override {
    std::vector<std::string> out;
    auto [begin, end] = parser_.get().equal_range(beast::string_view(name.data(), name.size()));
    for (auto it = begin; it != end; ++it) out.emplace_back(it->value());
    return out;
  }

  std::optional<uint64_t> content_length() const override {
    auto len = parser_.content_length();
    if (!len) return std::nullopt;
    return *len;
  }

  const Url& url() const override { return request_.url; }

  absl::StatusOr<size_t> ReadBody(std::span<std::byte> buf) override {
    if (buf.empty()) return 0;
    // Beast sizes each socket read by the spare capacity of buffer_ (at least 512 bytes, at
    // most 64 KiB) and the body passes through it: left at its header-sized capacity, a blob
    // would be read 512 bytes per recv, each with a timer re-arm and an epoll_wait.
    if (buffer_.capacity() < kBodyReadSize) buffer_.reserve(kBodyReadSize);
    while (!parser_.is_done()) {
      parser_.get().body().data = buf.data();
      parser_.get().body().size = buf.size();
      Lowest().expires_after(timeouts_.io);
      beast::error_code ec = RunToCompletion(ioc_, [&](auto h) {
        WithStream([&](auto& s) { http::async_read_some(s, buffer_, parser_, std::move(h)); });
      });
      if (ec == http::error::need_buffer) ec = {};
      if (ec) return TransportError(request_, "read body", ec);
      size_t n = buf.size() - parser_.get().body().size;
      if (n > 0) return n;
    }
    return 0;
  }

 private:
  using StreamVariant = std::variant<std::monostate, PlainStream, TlsStream>;

  // Calls f with the connected stream, plain or TLS.
  template <class F>
  void WithStream(F&& f) {
    if (auto* tls = std::get_if<TlsStream>(&stream_)) {
      f(*tls);
    } else {
      f(std::get<PlainStream>(stream_));
    }
  }

  beast::tcp_stream& Lowest() {
    if (auto* tls = std::get_if<TlsStream>(&stream_)) return beast::get_lowest_layer(*tls);
    return std::get<PlainStream>(stream_);
  }

  absl::Status MakeTlsStream(const TlsOptions& tls) {
    ssl_ctx_.emplace(ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(ssl_ctx_->native_handle(), TLS1_2_VERSION);
    beast::error_code ec;
    ssl_ctx_->set_default_verify_paths(ec);
    if (ec) return absl::InternalError(absl::StrCat("loading system CAs: ", ec.message()));
    for (const std::string& ca : tls.ca_files) {
      ssl_ctx_->load_verify_file(ca, ec);
      if (ec) {
        return absl::InvalidArgumentError(absl::StrCat("loading CA file ", ca, ": ", ec.message()));
      }
    }
    if (!tls.client_certs.empty()) {
      const auto& [cert, key] = tls.client_certs.front();
      ssl_ctx_->use_certificate_chain_file(cert, ec);
      if (!ec) ssl_ctx_->use_private_key_file(key, ssl::context::pem, ec);
      if (ec) {
        return absl::InvalidArgumentError(
            absl::StrCat("loading client certificate ", cert, " / ", key, ": ", ec.message()));
      }
    }
    ssl_ctx_->set_verify_mode(tls.skip_verify ? ssl::verify_none : ssl::verify_peer);
    TlsStream& s = stream_.emplace<TlsStream>(ioc_, *ssl_ctx_);
    const std::string& host = request_.url.host;
    SSL* native = s.native_handle();
    X509_VERIFY_PARAM* param = SSL_get0_param(native);
    if (IsIpAddress(host)) {
      X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
    } else {
      SSL_set_tlsext_host_name(native, host.c_str());
      X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
    }
    return absl::OkStatus();
  }

  HttpRequest request_;
  HttpTimeouts timeouts_;
  // Declaration order is destruction order reversed: streams die before the contexts.
  asio::io_context ioc_;
  std::optional<ssl::context> ssl_ctx_;
  StreamVariant stream_;
  beast::flat_buffer buffer_;
  http::response_parser<http::buffer_body> parser_;
};

bool IsRedirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

bool SameOrigin(const Url& a, const Url& b) {
  return a.scheme == b.scheme && absl::AsciiStrToLower(a.host) == absl::AsciiStrToLower(b.host) &&
         a.port == b.port;
}

}  // namespace

std::string Url::Authority() const {
  std::string h = host.find(':') != std::string::npos ? absl::StrCat("[", host, "]") : host;
  if (port == DefaultPort(scheme)) return h;
  return absl::StrCat(h, ":", port);
}

std::string Url::String() const { return absl::StrCat(scheme, "://", Authority(), target); }

absl::StatusOr<Url> ParseUrl(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid URL \"", ToAbsl(text), "\": ", ToAbsl(why)));
  };
  Url url;
  size_t sep = text.find("://");
  if (sep == std::string_view::npos) return bad("no scheme");
  url.scheme = absl::AsciiStrToLower(ToAbsl(text.substr(0, sep)));
  if (url.scheme != "http" && url.scheme != "https") return bad("scheme is not http or https");
  std::string_view rest = text.substr(sep + 3);
  size_t path_start = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, path_start);
  std::string_view target = path_start == std::string_view::npos ? "" : rest.substr(path_start);
  if (size_t hash = target.find('#'); hash != std::string_view::npos) {
    target = target.substr(0, hash);
  }
  if (authority.find('@') != std::string_view::npos) return bad("userinfo is not supported");
  std::string_view port_text;
  if (absl::StartsWith(ToAbsl(authority), "[")) {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("unterminated IPv6 address");
    url.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("junk after IPv6 address");
      port_text = after.substr(1);
    }
  } else {
    size_t colon = authority.rfind(':');
    url.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (url.host.empty()) return bad("empty host");
  if (port_text.empty()) {
    url.port = DefaultPort(url.scheme);
  } else {
    uint32_t port = 0;
    if (!absl::SimpleAtoi(ToAbsl(port_text), &port) || port == 0 || port > 65535) {
      return bad("bad port");
    }
    url.port = static_cast<uint16_t>(port);
  }
  url.target = target.empty() ? "/" : std::string(target);
  if (url.target.front() == '?') url.target.insert(0, "/");
  return url;
}

absl::StatusOr<Url> ResolveUrl(const Url& base, std::string_view location) {
  if (location.find("://") != std::string_view::npos) return ParseUrl(location);
  if (absl::StartsWith(ToAbsl(location), "//")) {
    return ParseUrl(absl::StrCat(base.scheme, ":", ToAbsl(location)));
  }
  Url url = base;
  if (absl::StartsWith(ToAbsl(location), "/")) {
    url.target = std::string(location);
  } else {
    // Relative path: replace everything after the last '/' of the base path.
    std::string path = base.target.substr(0, base.target.find('?'));
    url.target = absl::StrCat(path.substr(0, path.rfind('/') + 1), ToAbsl(location));
  }
  return url;
}

absl::StatusOr<std::string> HttpResponse::ReadAll(size_t max_bytes) {
  if (auto len = content_length(); len && *len > max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("response body from ", url().String(), " is ",
                                                     *len, " bytes, limit ", max_bytes));
  }
  std::string out;
  std::byte chunk[16 * 1024];
  for (;;) {
    absl::StatusOr<size_t> n = ReadBody(chunk);
    if (!n.ok()) return n.status();
    if (*n == 0) return out;
    if (out.size() + *n > max_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("response body from ", url().String(), " exceeds ", max_bytes, " bytes"));
    }
    out.append(reinterpret_cast<const char*>(chunk), *n);
  }
}

HttpClient::HttpClient(HttpTimeouts timeouts, std::string user_agent)
    : timeouts_(timeouts), user_agent_(std::move(user_agent)) {}

absl::StatusOr<std::unique_ptr<HttpResponse>> HttpClient::SendOnce(const HttpRequest& request,
                                                                   const TlsOptions& tls) const {
  auto conn = std::make_unique<Connection>(request, timeouts_);
  if (absl::Status s = conn->Open(tls, user_agent_); !s.ok()) return s;
  return std::unique_ptr<HttpResponse>(std::move(conn));
}

absl::StatusOr<std::unique_ptr<HttpResponse>> HttpClient::Send(const HttpRequest& request,
                                                               const TlsOptions& tls) const {
  HttpRequest current = request;
  for (int redirects = 0;; ++redirects) {
    absl::StatusOr<std::unique_ptr<HttpResponse>> response = SendOnce(current, tls);
    if (!response.ok() || !IsRedirect((*response)->status())) return response;
    std::optional<std::string> location = (*response)->Header("Location");
    if (!location) return response;
    if (redirects == kMaxRedirects) {
      return absl::UnavailableError(absl::StrCat(request.method, " ", request.url.String(),
                                                 ": more than ", kMaxRedirects, " redirects"));
    }
    absl::StatusOr<Url> next = ResolveUrl(current.url, *location);
    if (!next.ok()) return next.status();
    int status = (*response)->status();
    if (status == 303 || ((status == 301 || status == 302) && current.method == "POST")) {
      current.method = "GET";
      current.body.clear();
    }
    current.url = *std::move(next);
    // Credentials go only to the origin they were meant for; headers set for the original
    // origin come back if a later redirect returns there.
    current.headers.clear();
    for (const auto& header : request.headers) {
      if (absl::EqualsIgnoreCase(header.first, "Authorization") &&
          !SameOrigin(current.url, request.url)) {
        continue;
      }
      current.headers.push_back(header);
    }
  }
}

}  // namespace zsnap::unpack
