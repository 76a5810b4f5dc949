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

using Clock = std::chrono::steady_clock;

absl::Status TransportError(const HttpRequest& request, std::string_view what,
                            const beast::error_code& ec) {
  std::string why = ec.message();
  if (ec == beast::error::timeout || ec == asio::error::timed_out) why = "timed out";
  if (ec == http::error::partial_message) why = "connection closed before the end of the body";
  return absl::UnavailableError(absl::StrCat(ToAbsl(request.method), " ", request.url.Redacted(),
                                             ": ", ToAbsl(what), ": ", why));
}

std::string Seconds(std::chrono::milliseconds d) {
  return absl::StrCat(static_cast<double>(d.count()) / 1000, "s");
}

// One connection carrying one request; the response body is read through it.
//
// Every asynchronous operation runs through Run(), which drives the private io_context on the
// calling thread until the operation completes or a limit (operation timeout, low-speed
// guard, total deadline, stop request) ends it by closing the socket. The stop callback only
// posts an io_context::stop() so that Run() wakes up and looks at the stop token.
class Connection final : public HttpResponse {
 public:
  // Beast's largest single socket read for a message body (read_size's cap).
  static constexpr size_t kReadSize = 64 * 1024;

  Connection(const HttpRequest& request, const HttpTimeouts& timeouts, Clock::time_point deadline)
      : request_(request), timeouts_(timeouts), deadline_(deadline) {
    parser_.body_limit(std::numeric_limits<uint64_t>::max());
    parser_.header_limit(HttpClient::kMaxHeaderBytes);
    if (request.method == "HEAD") parser_.skip(true);
    if (request_.stop.stop_possible()) {
      stop_callback_.emplace(request_.stop, [this] { asio::post(ioc_, [this] { ioc_.stop(); }); });
    }
  }

  absl::Status Open(const TlsOptions& tls, const std::string& user_agent) {
    const Url& url = request_.url;
    tcp::resolver resolver(ioc_);
    tcp::resolver::results_type endpoints;
    beast::error_code ec;
    absl::Status s = Run(
        "resolve " + url.host, timeouts_.connect, /*count_speed=*/false,
        [&](auto done) {
          resolver.async_resolve(
              url.host, std::to_string(url.port),
              [&endpoints, done](beast::error_code e, tcp::resolver::results_type r) mutable {
                endpoints = std::move(r);
                done(e, 0);
              });
        },
        [&] { resolver.cancel(); }, ec);
    if (!s.ok()) return s;
    if (ec) return TransportError(request_, "resolve " + url.host, ec);

    if (url.scheme == "https") {
      if (s = MakeTlsStream(tls); !s.ok()) return s;
    } else {
      stream_.emplace<PlainStream>(ioc_);
    }
    s = RunOnSocket("connect", timeouts_.connect, false, [&](auto done) {
      Lowest().async_connect(
          endpoints, [done](beast::error_code e, const tcp::endpoint&) mutable { done(e, 0); });
    });
    if (!s.ok()) return s;

    if (auto* tls_stream = std::get_if<TlsStream>(&stream_)) {
      s = RunOnSocket("TLS handshake", timeouts_.connect, false, [&](auto done) {
        tls_stream->async_handshake(ssl::stream_base::client,
                                    [done](beast::error_code e) mutable { done(e, 0); });
      });
      if (!s.ok()) return s;
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
    s = RunOnSocket("write request", timeouts_.io, false, [&](auto done) {
      WithStream([&](auto& stream) { http::async_write(stream, req, done); });
    });
    if (!s.ok()) return s;
    return ReadHeader();
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
    if (!failed_.ok()) return failed_;
    if (buf.empty()) return 0;
    while (!parser_.is_done()) {
      if (buffer_.size() > 0) {
        parser_.get().body().data = buf.data();
        parser_.get().body().size = buf.size();
        beast::error_code ec;
        size_t used = parser_.put(buffer_.data(), ec);
        buffer_.consume(used);
        if (ec == http::error::need_buffer) ec = {};
        size_t n = buf.size() - parser_.get().body().size;
        if (ec && ec != http::error::need_more) {
          return Fail(TransportError(request_, "parse body", ec));
        }
        if (n > 0) return n;
        // Framing consumed (a chunk header, say): parse on before reading more.
        if (!ec && used > 0) continue;
        if (parser_.is_done()) break;
      }
      bool eof = false;
      if (absl::Status s = Fill("read body", eof); !s.ok()) return Fail(s);
      if (eof) {
        beast::error_code ec;
        parser_.put_eof(ec);
        if (ec) return Fail(TransportError(request_, "read body", ec));
      }
    }
    return 0;
  }

 private:
  using StreamVariant = std::variant<std::monostate, PlainStream, TlsStream>;

  // "GET <redacted url>: <what>".
  std::string Where(std::string_view what) const {
    return absl::StrCat(request_.method, " ", request_.url.Redacted(), ": ", ToAbsl(what));
  }

  absl::Status Fail(absl::Status s) {
    failed_ = s;
    return s;
  }

  // Runs the asynchronous operation `start` begins (it receives a completion handler taking
  // (error_code, bytes)) until it completes; `ec` and the return value of this function say
  // how. A limit that ends the operation first is returned as a Status after `abort` has
  // cancelled the operation and it has completed. `count_speed` subjects the wait to the
  // low-speed guard.
  template <class Start, class Abort>
  absl::Status Run(std::string_view what, std::chrono::milliseconds timeout, bool count_speed,
                   Start&& start, Abort&& abort, beast::error_code& ec, size_t* bytes = nullptr) {
    bool done = false;
    size_t n = 0;
    auto handler = [&done, &ec, &n](beast::error_code e, size_t k) {
      ec = e;
      n = k;
      done = true;
    };
    const Clock::time_point begin = Clock::now();
    const Clock::time_point op_deadline = begin + timeout;
    const bool speed_guard =
        count_speed && timeouts_.low_speed_bytes > 0 && timeouts_.low_speed_window.count() > 0;
    absl::Status limit;
    start(handler);
    while (!done) {
      ioc_.restart();
      if (!limit.ok()) {
        ioc_.run();  // the aborted operation completes with operation_aborted
        continue;
      }
      const Clock::time_point now = Clock::now();
      Clock::time_point wake = std::min(op_deadline, deadline_);
      const bool slow_window = speed_guard && window_bytes_ < timeouts_.low_speed_bytes;
      if (slow_window) wake = std::min(wake, begin + (timeouts_.low_speed_window - window_waited_));
      if (request_.stop.stop_requested()) {
        limit = absl::CancelledError(absl::StrCat(Where(what), ": cancelled"));
      } else if (now >= deadline_) {
        limit = absl::DeadlineExceededError(absl::StrCat(
            Where(what), ": exceeded the total deadline of ", Seconds(timeouts_.total)));
      } else if (now >= op_deadline) {
        limit = absl::UnavailableError(
            absl::StrCat(Where(what), ": timed out after ", Seconds(timeout)));
      } else if (slow_window && now >= wake) {
        limit = SlowError(what);
      } else {
        ioc_.run_until(wake);
        continue;
      }
      abort();
    }
    if (speed_guard) {
      window_waited_ += std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - begin);
      window_bytes_ += n;
      if (window_waited_ >= timeouts_.low_speed_window) {
        const bool slow = window_bytes_ < timeouts_.low_speed_bytes;
        window_waited_ = std::chrono::milliseconds(0);
        window_bytes_ = 0;
        if (slow && limit.ok()) limit = SlowError(what);
      }
    }
    if (bytes != nullptr) *bytes = n;
    return limit;
  }

  absl::Status SlowError(std::string_view what) const {
    return absl::UnavailableError(
        absl::StrCat(Where(what), ": fewer than ", timeouts_.low_speed_bytes, " bytes in ",
                     Seconds(timeouts_.low_speed_window), " (low-speed limit)"));
  }

  // Run() for an operation on the connected socket, cancelled by closing it; a failed
  // operation becomes Unavailable.
  template <class Start>
  absl::Status RunOnSocket(std::string_view what, std::chrono::milliseconds timeout,
                           bool count_speed, Start&& start, size_t* bytes = nullptr) {
    beast::error_code ec;
    absl::Status s = Run(
        what, timeout, count_speed, start, [this] { Lowest().close(); }, ec, bytes);
    if (!s.ok()) return s;
    if (ec) return TransportError(request_, what, ec);
    return absl::OkStatus();
  }

  // One socket read appended to buffer_; `eof` when the peer closed the connection.
  absl::Status Fill(std::string_view what, bool& eof) {
    eof = false;
    if (buffer_.size() >= buffer_.max_size()) {
      return absl::ResourceExhaustedError(
          absl::StrCat(Where(what), ": response framing (",
                       parser_.is_header_done() ? "a chunk header or the trailer" : "the header",
                       ") exceeds ", HttpClient::kMaxBufferBytes, " bytes"));
    }
    auto space = buffer_.prepare(std::min(kReadSize, buffer_.max_size() - buffer_.size()));
    beast::error_code ec;
    size_t n = 0;
    absl::Status s = Run(
        what, timeouts_.io, /*count_speed=*/true,
        [&](auto done) { WithStream([&](auto& stream) { stream.async_read_some(space, done); }); },
        [this] { Lowest().close(); }, ec, &n);
    buffer_.commit(n);
    if (!s.ok()) return s;
    if (ec == asio::error::eof) {
      eof = true;
      return absl::OkStatus();
    }
    if (ec) return TransportError(request_, what, ec);
    return absl::OkStatus();
  }

  absl::Status ReadHeader() {
    while (!parser_.is_header_done()) {
      if (buffer_.size() > 0) {
        beast::error_code ec;
        buffer_.consume(parser_.put(buffer_.data(), ec));
        if (!ec) continue;
        if (ec == http::error::header_limit) {
          return absl::ResourceExhaustedError(
              absl::StrCat(request_.method, " ", request_.url.Redacted(),
                           ": response header exceeds ", HttpClient::kMaxHeaderBytes, " bytes"));
        }
        if (ec != http::error::need_more) {
          return TransportError(request_, "parse response header", ec);
        }
      }
      bool eof = false;
      if (absl::Status s = Fill("read response header", eof); !s.ok()) return s;
      if (eof) {
        return TransportError(request_, "read response header", http::error::end_of_stream);
      }
    }
    return absl::OkStatus();
  }

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
  Clock::time_point deadline_;
  // Declaration order is destruction order reversed: streams die before the contexts.
  asio::io_context ioc_;
  std::optional<ssl::context> ssl_ctx_;
  StreamVariant stream_;
  // Bounded: Beast 1.74 keeps a chunk header's extensions and the trailer in the buffer
  // until their CRLF arrives, with no limit of its own.
  beast::flat_buffer buffer_{HttpClient::kMaxBufferBytes};
  http::response_parser<http::buffer_body> parser_;
  absl::Status failed_;  // the first error of ReadBody, returned by every later call
  // Low-speed guard: time spent waiting in reads and bytes received in the current window.
  std::chrono::milliseconds window_waited_{0};
  uint64_t window_bytes_ = 0;
  // Destroyed first: once gone, no stop request posts to ioc_ any more.
  std::optional<std::stop_callback<std::function<void()>>> stop_callback_;
};

bool IsRedirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

// RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) followed by ':', which
// comes before any '/', '?' or '#' (so "/p?next=http://x" is a path, not an absolute URL).
bool HasScheme(std::string_view ref) {
  if (ref.empty() || !absl::ascii_isalpha(static_cast<unsigned char>(ref.front()))) return false;
  for (char c : ref.substr(1)) {
    if (c == ':') return true;
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.') {
      return false;
    }
  }
  return false;
}

// RFC 3986 §5.2.4 remove_dot_segments, for a path starting with '/'.
std::string RemoveDotSegments(std::string_view path) {
  std::vector<std::string_view> out;
  size_t start = 1;  // past the leading '/'
  bool trailing_slash = false;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view segment = path.substr(start, end - start);
    trailing_slash = segment == "." || segment == "..";
    if (segment == "..") {
      if (!out.empty()) out.pop_back();
    } else if (segment != ".") {
      out.push_back(segment);
    }
    start = end + 1;
  }
  std::string result;
  for (std::string_view segment : out) absl::StrAppend(&result, "/", ToAbsl(segment));
  if (trailing_slash || result.empty()) result.push_back('/');
  return result;
}

// Bytes that end a URL quoted in free text.
bool IsUrlDelimiter(char c) {
  return absl::ascii_isspace(static_cast<unsigned char>(c)) || c == '"' || c == '\'' || c == '<' ||
         c == '>' || c == '`' || c == '\\';
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

std::string Url::Redacted() const {
  size_t query = target.find('?');
  if (query == std::string::npos) return String();
  return absl::StrCat(scheme, "://", Authority(), target.substr(0, query), "?redacted");
}

absl::StatusOr<Url> ParseUrl(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid URL \"", RedactUrls(text), "\": ", ToAbsl(why)));
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
  // RFC 3986 §5.2 (strict), for the reference forms a Location header can take.
  if (HasScheme(location)) return ParseUrl(location);
  location = location.substr(0, location.find('#'));
  if (absl::StartsWith(ToAbsl(location), "//")) {
    return ParseUrl(absl::StrCat(base.scheme, ":", ToAbsl(location)));
  }
  const size_t base_query = base.target.find('?');
  const std::string base_path = base.target.substr(0, base_query);
  Url url = base;
  if (location.empty()) {
    url.target = base.target;
  } else if (location.front() == '?') {
    url.target = absl::StrCat(base_path, ToAbsl(location));
  } else {
    const size_t query = location.find('?');
    std::string_view path = location.substr(0, query);
    std::string_view rest = query == std::string_view::npos ? "" : location.substr(query);
    std::string merged =
        path.front() == '/'
            ? std::string(path)
            : absl::StrCat(base_path.substr(0, base_path.rfind('/') + 1), ToAbsl(path));
    url.target = absl::StrCat(RemoveDotSegments(merged), ToAbsl(rest));
  }
  if (url.target.empty() || url.target.front() != '/') url.target.insert(0, "/");
  return url;
}

std::string RedactUrls(std::string_view text) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    size_t http = text.find("http", i);
    if (http == std::string_view::npos) break;
    std::string_view tail = text.substr(http);
    size_t scheme_len = absl::StartsWithIgnoreCase(ToAbsl(tail), "https://")  ? 8
                        : absl::StartsWithIgnoreCase(ToAbsl(tail), "http://") ? 7
                                                                              : 0;
    if (scheme_len == 0) {
      out.append(text.substr(i, http + 4 - i));
      i = http + 4;
      continue;
    }
    // The URL runs to the first byte that cannot be part of one in a message.
    size_t end = http + scheme_len;
    while (end < text.size() && !IsUrlDelimiter(text[end])) ++end;
    // Punctuation of the sentence around the URL stays visible ("GET <url>: timed out").
    while (end > http + scheme_len &&
           absl::string_view(":,;.)").find(text[end - 1]) != absl::string_view::npos) {
      --end;
    }
    out.append(text.substr(i, http - i));
    std::string_view url = text.substr(http, end - http);
    size_t cut = url.find_first_of("?#");
    out.append(url.substr(0, cut));
    if (cut != std::string_view::npos) out.append("?redacted");
    i = end;
  }
  if (i < text.size()) out.append(text.substr(i));
  return out;
}

absl::StatusOr<std::string> HttpResponse::ReadAll(size_t max_bytes) {
  if (auto len = content_length(); len && *len > max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("response body from ", url().Redacted(),
                                                     " is ", *len, " bytes, limit ", max_bytes));
  }
  std::string out;
  std::byte chunk[16 * 1024];
  for (;;) {
    absl::StatusOr<size_t> n = ReadBody(chunk);
    if (!n.ok()) return n.status();
    if (*n == 0) return out;
    if (out.size() + *n > max_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("response body from ", url().Redacted(), " exceeds ", max_bytes, " bytes"));
    }
    out.append(reinterpret_cast<const char*>(chunk), *n);
  }
}

HttpClient::HttpClient(HttpTimeouts timeouts, std::string user_agent)
    : timeouts_(timeouts), user_agent_(std::move(user_agent)) {}

std::string HttpClient::DefaultUserAgent() {
#ifdef ZSNAP_VERSION
  return "zsnap/" ZSNAP_VERSION;
#else
  return "zsnap/0.1";
#endif
}

absl::StatusOr<std::unique_ptr<HttpResponse>> HttpClient::SendOnce(
    const HttpRequest& request, const TlsOptions& tls, Clock::time_point deadline) const {
  auto conn = std::make_unique<Connection>(request, timeouts_, deadline);
  if (absl::Status s = conn->Open(tls, user_agent_); !s.ok()) return s;
  return std::unique_ptr<HttpResponse>(std::move(conn));
}

absl::StatusOr<std::unique_ptr<HttpResponse>> HttpClient::Send(const HttpRequest& request,
                                                               const TlsOptions& tls) const {
  const Clock::time_point deadline = request.bounded && timeouts_.total.count() > 0
                                         ? Clock::now() + timeouts_.total
                                         : Clock::time_point::max();
  HttpRequest current = request;
  for (int redirects = 0;; ++redirects) {
    absl::StatusOr<std::unique_ptr<HttpResponse>> response = SendOnce(current, tls, deadline);
    if (!response.ok() || !IsRedirect((*response)->status())) return response;
    std::optional<std::string> location = (*response)->Header("Location");
    if (!location) return response;
    if (redirects == kMaxRedirects) {
      return absl::UnavailableError(absl::StrCat(request.method, " ", request.url.Redacted(),
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
    // origin come back if a later redirect returns there. Another origin gets what the
    // authorize hook has for it (containerd remotes/docker/resolver.go request.do: the
    // client's CheckRedirect calls authorize(), which looks the handler up by req.URL.Host).
    current.headers.clear();
    const bool same_origin = SameOrigin(current.url, request.url);
    for (const auto& header : request.headers) {
      if (absl::EqualsIgnoreCase(header.first, "Authorization") && !same_origin) continue;
      current.headers.push_back(header);
    }
    if (!same_origin && request.authorize) {
      if (std::optional<std::string> authorization = request.authorize(current.url)) {
        current.headers.emplace_back("Authorization", *std::move(authorization));
      }
    }
  }
}

}  // namespace zsnap::unpack
