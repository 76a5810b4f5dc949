#include "unpack/registry_auth.h"

#include <algorithm>
#include <cctype>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace zsnap::unpack {
namespace {

absl::string_view ToAbsl(std::string_view s) { return {s.data(), s.size()}; }

constexpr size_t kMaxTokenResponse = 1 << 20;
constexpr std::chrono::seconds kDefaultTokenLifetime{60};
// Refresh a little before the server's expiry so a token does not die in flight.
constexpr std::chrono::seconds kExpiryMargin{10};

bool IsTokenChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// A cursor over a WWW-Authenticate value.
class Lexer {
 public:
  explicit Lexer(std::string_view s) : s_(s) {}
  bool Done() const { return pos_ >= s_.size(); }
  char Peek() const { return Done() ? '\0' : s_[pos_]; }
  void SkipSpace() {
    while (!Done() && (s_[pos_] == ' ' || s_[pos_] == '\t')) ++pos_;
  }
  void SkipSpaceAndCommas() {
    while (!Done() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == ',')) ++pos_;
  }
  std::string Token() {
    size_t start = pos_;
    while (!Done() && IsTokenChar(s_[pos_])) ++pos_;
    return std::string(s_.substr(start, pos_ - start));
  }
  // After the opening quote; handles backslash escapes.
  absl::StatusOr<std::string> Quoted() {
    std::string out;
    ++pos_;
    while (!Done()) {
      char c = s_[pos_++];
      if (c == '"') return out;
      if (c == '\\' && !Done()) c = s_[pos_++];
      out.push_back(c);
    }
    return absl::InvalidArgumentError(
        absl::StrCat("WWW-Authenticate \"", ToAbsl(s_), "\": unterminated quoted string"));
  }
  size_t pos() const { return pos_; }
  void set_pos(size_t p) { pos_ = p; }
  void Advance() { ++pos_; }

 private:
  std::string_view s_;
  size_t pos_ = 0;
};

}  // namespace

absl::StatusOr<std::vector<AuthChallenge>> ParseWwwAuthenticate(std::string_view header) {
  std::vector<AuthChallenge> out;
  Lexer lex(header);
  lex.SkipSpaceAndCommas();
  while (!lex.Done()) {
    std::string scheme = lex.Token();
    if (scheme.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("WWW-Authenticate \"", ToAbsl(header),
                                                     "\": expected an auth scheme at offset ",
                                                     lex.pos()));
    }
    AuthChallenge challenge;
    challenge.scheme = absl::AsciiStrToLower(scheme);
    lex.SkipSpace();
    // auth-params until the next token that is not followed by '=' (the next scheme).
    for (;;) {
      lex.SkipSpaceAndCommas();
      size_t mark = lex.pos();
      std::string name = lex.Token();
      lex.SkipSpace();
      if (name.empty() || lex.Peek() != '=') {
        lex.set_pos(mark);
        // token68 (e.g. "abc==") or junk: skip to the next comma.
        if (name.empty() && !lex.Done() && lex.Peek() != ',') {
          while (!lex.Done() && lex.Peek() != ',') lex.Advance();
        }
        break;
      }
      lex.Advance();  // '='
      lex.SkipSpace();
      std::string value;
      if (lex.Peek() == '"') {
        absl::StatusOr<std::string> q = lex.Quoted();
        if (!q.ok()) return q.status();
        value = *std::move(q);
      } else if (lex.Peek() == '=') {
        // token68 padding after a bare token: not a parameter.
        while (!lex.Done() && lex.Peek() != ',') lex.Advance();
        continue;
      } else {
        value = lex.Token();
      }
      challenge.params[absl::AsciiStrToLower(name)] = std::move(value);
    }
    out.push_back(std::move(challenge));
    lex.SkipSpaceAndCommas();
  }
  return out;
}

std::string BasicAuthorization(const Credentials& credentials) {
  return absl::StrCat(
      "Basic ", absl::Base64Escape(absl::StrCat(credentials.username, ":", credentials.secret)));
}

std::string QueryEscape(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

RegistryAuth::RegistryAuth(const HttpClient& http, CredentialsLookup credentials)
    : http_(http), credentials_(std::move(credentials)) {}

std::optional<std::string> RegistryAuth::Cached(const std::string& authority,
                                                const std::string& scope) {
  absl::MutexLock lock(&mu_);
  auto now = std::chrono::steady_clock::now();
  for (const Key& key : {Key{authority, scope}, Key{authority, ""}}) {
    auto it = cache_.find(key);
    if (it == cache_.end()) continue;
    if (it->second.expires > now) return it->second.authorization;
    cache_.erase(it);
  }
  return std::nullopt;
}

void RegistryAuth::Invalidate(const std::string& authority, const std::string& scope) {
  absl::MutexLock lock(&mu_);
  cache_.erase(Key{authority, scope});
  cache_.erase(Key{authority, ""});
}

absl::StatusOr<std::string> RegistryAuth::Authorize(
    const std::string& authority, const std::string& scope,
    const std::vector<std::string>& www_authenticate, const TlsOptions& tls) {
  std::vector<AuthChallenge> challenges;
  for (const std::string& value : www_authenticate) {
    absl::StatusOr<std::vector<AuthChallenge>> parsed = ParseWwwAuthenticate(value);
    if (!parsed.ok()) return parsed.status();
    for (auto& c : *parsed) challenges.push_back(std::move(c));
  }
  if (challenges.empty()) {
    return absl::UnauthenticatedError(
        absl::StrCat(authority, " answered 401 without a WWW-Authenticate challenge"));
  }
  absl::StatusOr<Credentials> credentials = credentials_ ? credentials_(authority) : Credentials{};
  if (!credentials.ok()) return credentials.status();

  // Prefer Bearer (what registries mean) over Basic when both are offered.
  const AuthChallenge* bearer = nullptr;
  const AuthChallenge* basic = nullptr;
  for (const AuthChallenge& c : challenges) {
    if (c.scheme == "bearer" && bearer == nullptr) bearer = &c;
    if (c.scheme == "basic" && basic == nullptr) basic = &c;
  }
  Entry entry;
  Key key;
  if (bearer != nullptr) {
    absl::StatusOr<Entry> token = FetchToken(*bearer, scope, *credentials, tls);
    if (!token.ok()) return token.status();
    entry = *std::move(token);
    key = {authority, scope};
  } else if (basic != nullptr) {
    if (credentials->empty()) {
      return absl::UnauthenticatedError(
          absl::StrCat(authority,
                       " requires basic authentication and no credentials are "
                       "configured for it"));
    }
    entry = {BasicAuthorization(*credentials), std::chrono::steady_clock::time_point::max()};
    key = {authority, ""};
  } else {
    return absl::UnimplementedError(
        absl::StrCat(authority, " asks for unsupported auth scheme ", challenges.front().scheme));
  }
  absl::MutexLock lock(&mu_);
  cache_[key] = entry;
  return entry.authorization;
}

absl::StatusOr<RegistryAuth::Entry> RegistryAuth::FetchToken(const AuthChallenge& challenge,
                                                             const std::string& scope,
                                                             const Credentials& credentials,
                                                             const TlsOptions& tls) {
  auto realm_it = challenge.params.find("realm");
  if (realm_it == challenge.params.end() || realm_it->second.empty()) {
    return absl::UnauthenticatedError("Bearer challenge without a realm");
  }
  absl::StatusOr<Url> url = ParseUrl(realm_it->second);
  if (!url.ok()) return absl::UnauthenticatedError(url.status().message());
  std::vector<std::string> query;
  if (auto it = challenge.params.find("service"); it != challenge.params.end()) {
    query.push_back(absl::StrCat("service=", QueryEscape(it->second)));
  }
  // The registry's own scope (it may name more actions) plus ours, each a separate scope=.
  std::vector<std::string> scopes;
  if (auto it = challenge.params.find("scope"); it != challenge.params.end()) {
    for (absl::string_view s : absl::StrSplit(it->second, ' ', absl::SkipEmpty())) {
      scopes.emplace_back(s);
    }
  }
  if (!scope.empty() && std::find(scopes.begin(), scopes.end(), scope) == scopes.end()) {
    scopes.push_back(scope);
  }
  for (const std::string& s : scopes) query.push_back(absl::StrCat("scope=", QueryEscape(s)));
  if (!query.empty()) {
    url->target += url->target.find('?') == std::string::npos ? "?" : "&";
    url->target += absl::StrJoin(query, "&");
  }

  HttpRequest request;
  request.url = *url;
  if (!credentials.empty()) {
    request.headers.emplace_back("Authorization", BasicAuthorization(credentials));
  }
  absl::StatusOr<std::unique_ptr<HttpResponse>> response = http_.Send(request, tls);
  if (!response.ok()) return response.status();
  int status = (*response)->status();
  if (status == 401) {
    return absl::UnauthenticatedError(
        absl::StrCat("token server ", url->Authority(), " rejected the credentials (401)"));
  }
  if (status == 403) {
    return absl::PermissionDeniedError(
        absl::StrCat("token server ", url->Authority(), " denied scope ", scope, " (403)"));
  }
  if (status != 200) {
    return absl::UnavailableError(
        absl::StrCat("token server ", url->Authority(), " answered HTTP ", status));
  }
  absl::StatusOr<std::string> body = (*response)->ReadAll(kMaxTokenResponse);
  if (!body.ok()) return body.status();
  nlohmann::json json = nlohmann::json::parse(*body, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) {
    return absl::UnauthenticatedError(
        absl::StrCat("token server ", url->Authority(), " sent a body that is not JSON"));
  }
  std::string token;
  for (const char* field : {"token", "access_token"}) {
    auto it = json.find(field);
    if (it != json.end() && it->is_string() && !it->get<std::string>().empty()) {
      token = it->get<std::string>();
      break;
    }
  }
  if (token.empty()) {
    return absl::UnauthenticatedError(
        absl::StrCat("token server ", url->Authority(), " sent no token"));
  }
  std::chrono::seconds lifetime = kDefaultTokenLifetime;
  if (auto it = json.find("expires_in"); it != json.end() && it->is_number_integer()) {
    lifetime = std::max(kDefaultTokenLifetime, std::chrono::seconds(it->get<int64_t>()));
  }
  return Entry{absl::StrCat("Bearer ", token),
               std::chrono::steady_clock::now() + lifetime - kExpiryMargin};
}

}  // namespace zsnap::unpack
