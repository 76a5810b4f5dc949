// Registry authentication as the Distribution token spec and containerd's docker authorizer
// do it: an anonymous request first; on 401 the WWW-Authenticate challenges decide:
//  * Bearer realm="…",service="…",scope="…" -> GET realm?service=…&scope=… (with the host's
//    basic credentials if there are any), token from the JSON "token" or "access_token"
//    field, cached per (host, scope) until expires_in (default 60 s) runs out;
//  * Basic -> "Basic base64(user:secret)" from the host's credentials, cached per host.
//
// Ownership: RegistryAuth borrows the HttpClient, which must outlive it.
// Thread safety: all methods may be called concurrently; the cache is guarded by mu_ and no
// lock is held across a token fetch or a credential helper run.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "unpack/http_client.h"

namespace zsnap::unpack {

// One challenge of a WWW-Authenticate header: scheme lowercased, parameter names lowercased,
// values unquoted.
struct AuthChallenge {
  std::string scheme;
  std::map<std::string, std::string> params;
};

// Parses every challenge of one or more WWW-Authenticate values (RFC 7235: comma-separated
// challenges of comma-separated auth-params; token68 forms are skipped). InvalidArgument on
// an unterminated quoted string or a missing scheme.
absl::StatusOr<std::vector<AuthChallenge>> ParseWwwAuthenticate(std::string_view header);

// A username and a secret (password or token); both empty means anonymous.
struct Credentials {
  std::string username;
  std::string secret;
  bool empty() const { return username.empty() && secret.empty(); }
};

// Looks up credentials for a registry authority ("host[:port]"); OK with empty Credentials
// when there are none.
using CredentialsLookup = std::function<absl::StatusOr<Credentials>(std::string_view authority)>;

class RegistryAuth {
 public:
  RegistryAuth(const HttpClient& http, CredentialsLookup credentials);

  // The cached Authorization value for `authority` and `scope`, if any is still valid.
  std::optional<std::string> Cached(const std::string& authority, const std::string& scope);

  // Answers the 401 challenges (`www_authenticate`: the header values) of `authority` for
  // `scope` ("repository:<name>:pull"), caches and returns the Authorization value.
  // Unauthenticated when credentials are missing or rejected, PermissionDenied when the
  // token server refuses them, Unavailable when it cannot be reached, Unimplemented for an
  // unknown scheme.
  absl::StatusOr<std::string> Authorize(const std::string& authority, const std::string& scope,
                                        const std::vector<std::string>& www_authenticate,
                                        const TlsOptions& tls);

  // Drops the cached value, e.g. after the registry rejected it.
  void Invalidate(const std::string& authority, const std::string& scope);

 private:
  struct Entry {
    std::string authorization;
    std::chrono::steady_clock::time_point expires;
  };
  using Key = std::pair<std::string, std::string>;  // (authority, scope or "" for Basic)

  absl::StatusOr<Entry> FetchToken(const AuthChallenge& challenge, const std::string& scope,
                                   const Credentials& credentials, const TlsOptions& tls);

  const HttpClient& http_;
  CredentialsLookup credentials_;
  absl::Mutex mu_;
  std::map<Key, Entry> cache_ ABSL_GUARDED_BY(mu_);
};

// "Basic " + base64("user:secret").
std::string BasicAuthorization(const Credentials& credentials);

// Percent-encodes a query component (RFC 3986 unreserved characters pass through).
std::string QueryEscape(std::string_view s);

}  // namespace zsnap::unpack
