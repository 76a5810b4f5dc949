// A small blocking HTTP/1.1 client on Boost.Beast over TCP or TLS (OpenSSL), for the registry
// client: one request -> one response whose body is read incrementally by the caller, so a
// multi-GiB layer streams through a fixed buffer and is never held in memory.
//
// Why blocking: the unpack pipeline pulls bytes (ByteSource::Read) on its read stage's thread,
// so each fetch owns a private io_context driven on the calling thread. Operations are issued
// asynchronously and the context is run until they finish, which is what gives every connect,
// handshake, write and read its own deadline (beast::tcp_stream timeouts apply to async
// operations only). A shared network io_context can replace this later behind the same API.
//
// Redirects (301/302/303/307/308, up to kMaxRedirects) are followed inside Send. When a
// redirect changes scheme, host or port the Authorization header is dropped: presigned storage
// URLs (S3, GCS) reject requests that carry the registry's credentials, and the credentials
// must not leak to another host anyway. The request's `authorize` hook may supply the
// Authorization for the new origin instead (containerd remotes/docker/resolver.go
// request.do: CheckRedirect re-runs the authorizer for the redirected request's host).
//
// Bounded cost against a hostile server: the response header is at most kMaxHeaderBytes, and
// all framing the parser must hold at once (a chunk header with its extensions, the trailer)
// fits in a read buffer of kMaxBufferBytes, else ResourceExhausted. Every wait is bounded:
// each operation by HttpTimeouts::io (connect: ::connect), reads by a low-speed guard (curl's
// CURLOPT_LOW_SPEED_LIMIT/TIME: fewer than low_speed_bytes in low_speed_window of waiting is
// Unavailable), and requests that are not streams by a total deadline (DeadlineExceeded).
// HttpRequest::stop cancels a request from any thread (Cancelled), also while its body is
// being read.
//
// URLs in messages are redacted (Url::Redacted): presigned storage URLs carry their
// credentials in the query string (X-Amz-Signature, sig, token, ...).
//
// Thread safety: an HttpClient is immutable after construction and may be shared; each
// HttpResponse belongs to one thread at a time.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace zsnap::unpack {

// An absolute http(s) URL split into the parts the client needs.
struct Url {
  std::string scheme;  // "http" or "https"
  std::string host;    // name or address; IPv6 without brackets
  uint16_t port = 0;   // explicit or the scheme's default
  std::string target;  // path plus query, at least "/"

  // "host" or "host:port" when the port is not the scheme's default; IPv6 in brackets.
  std::string Authority() const;
  std::string String() const;
  // scheme://authority/path with any query replaced by "?redacted": what logs and messages
  // show, since presigned URLs carry credentials in the query.
  std::string Redacted() const;
};

// Every http(s) URL in `text` with its query and fragment redacted as Url::Redacted does
// (for messages that may quote a URL, e.g. pull reports).
std::string RedactUrls(std::string_view text);

// Parses "http://host[:port][/path][?query]". InvalidArgument for anything else.
absl::StatusOr<Url> ParseUrl(std::string_view url);
// Resolves a Location header value (absolute, scheme-relative or path) against `base`.
absl::StatusOr<Url> ResolveUrl(const Url& base, std::string_view location);

// TLS settings for one registry host (containerd hosts.toml: ca, client, skip_verify).
struct TlsOptions {
  bool skip_verify = false;
  std::vector<std::string> ca_files;  // PEM files trusted in addition to the system CAs
  std::vector<std::pair<std::string, std::string>> client_certs;  // (cert PEM, key PEM)
};

struct HttpTimeouts {
  std::chrono::milliseconds connect{30'000};  // resolve + connect + TLS handshake
  std::chrono::milliseconds io{60'000};       // each write, header read and body read
  // Low-speed guard (curl's --speed-limit/--speed-time): a response whose bytes arrive at
  // fewer than low_speed_bytes per low_speed_window, counting only time spent waiting for
  // them, fails Unavailable. 0 in either field disables it.
  uint64_t low_speed_bytes = 1024;
  std::chrono::milliseconds low_speed_window{30'000};
  // Send to the end of the body, redirects included, for requests with bounded = true
  // (manifests, tokens, configs); DeadlineExceeded past it. 0 disables it.
  std::chrono::milliseconds total{60'000};
};

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method = "GET";
  Url url;
  HttpHeaders headers;  // Host, User-Agent and Content-Length are added by the client
  std::string body;
  // Whether HttpTimeouts::total applies; false for streams of unknown duration (blobs).
  bool bounded = true;
  // request_stop() from any thread makes the pending operation and all later ones Cancelled.
  std::stop_token stop;
  // After a redirect to another origin: the Authorization to send there, if any.
  std::function<std::optional<std::string>(const Url&)> authorize;
};

// A response whose headers are read and whose body is pending on the connection.
class HttpResponse {
 public:
  virtual ~HttpResponse() = default;
  virtual int status() const = 0;
  // The first value of a header (case-insensitive name), or nullopt.
  virtual std::optional<std::string> Header(std::string_view name) const = 0;
  // Every value of a header, in order (WWW-Authenticate may repeat).
  virtual std::vector<std::string> Headers(std::string_view name) const = 0;
  // Content-Length if the server sent one.
  virtual std::optional<uint64_t> content_length() const = 0;
  // The URL that produced this response, after redirects.
  virtual const Url& url() const = 0;
  // Reads up to buf.size() body bytes; 0 at the end of the body. A connection that ends
  // before the announced length, a timeout, a too slow peer or a TLS error is Unavailable;
  // oversized chunk framing ResourceExhausted, the total deadline DeadlineExceeded, a stop
  // request Cancelled. After an error every later call returns the same error.
  virtual absl::StatusOr<size_t> ReadBody(std::span<std::byte> buf) = 0;
  // Reads the rest of the body into a string; ResourceExhausted past `max_bytes`.
  absl::StatusOr<std::string> ReadAll(size_t max_bytes);
};

class HttpClient {
 public:
  static constexpr int kMaxRedirects = 10;
  // The status line and header fields of a response.
  static constexpr uint32_t kMaxHeaderBytes = 64 * 1024;
  // The read buffer: a header, or a chunk header or trailer, must fit in it whole.
  static constexpr size_t kMaxBufferBytes = 128 * 1024;

  explicit HttpClient(HttpTimeouts timeouts = {}, std::string user_agent = DefaultUserAgent());

  // "zsnap/<project version>".
  static std::string DefaultUserAgent();

  // Sends `request` with `tls` for https (the same settings follow redirects, as one
  // containerd host's http.Client does) and returns once the final response's headers are
  // read. Transport failures (refused, reset, timeout, too slow, TLS) are Unavailable; an
  // unusable URL or TLS file is InvalidArgument; too many redirects is Unavailable; an
  // oversized header or chunk framing is ResourceExhausted; the total deadline is
  // DeadlineExceeded; a stop request is Cancelled. HTTP error statuses are returned as
  // responses, not as errors.
  absl::StatusOr<std::unique_ptr<HttpResponse>> Send(const HttpRequest& request,
                                                     const TlsOptions& tls = {}) const;

 private:
  absl::StatusOr<std::unique_ptr<HttpResponse>> SendOnce(
      const HttpRequest& request, const TlsOptions& tls,
      std::chrono::steady_clock::time_point deadline) const;

  HttpTimeouts timeouts_;
  std::string user_agent_;
};

}  // namespace zsnap::unpack
