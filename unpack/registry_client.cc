#include "unpack/registry_client.h"

#include <algorithm>
#include <regex>
#include <span>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "unpack/digest.h"
#include "unpack/registry_blob_source.h"
#include "unpack/registry_json.h"

namespace zsnap::unpack {
namespace {

absl::string_view ToAbsl(std::string_view s) { return {s.data(), s.size()}; }

constexpr char kOciManifest[] = "application/vnd.oci.image.manifest.v1+json";
constexpr char kOciIndex[] = "application/vnd.oci.image.index.v1+json";
constexpr char kDockerManifest[] = "application/vnd.docker.distribution.manifest.v2+json";
constexpr char kDockerList[] = "application/vnd.docker.distribution.manifest.list.v2+json";

// distribution/reference grammar pieces.
const std::regex& PathComponent() {
  static const std::regex re("[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*");
  return re;
}
const std::regex& TagPattern() {
  static const std::regex re("[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");
  return re;
}
const std::regex& DomainPattern() {
  static const std::regex re(
      "(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
      "|\\[[0-9A-Fa-f:.]+\\])(?::[0-9]+)?");
  return re;
}

bool IsDigest(std::string_view d) { return ParseDigest(d).ok(); }

absl::Status BadReference(std::string_view text, std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid image reference \"", ToAbsl(text), "\": ", ToAbsl(why)));
}

bool VariantMatches(const Platform& want, const Platform& have_platform) {
  if (want.variant.empty()) return true;
  std::string have = have_platform.variant;
  // arm64's only variant is v8; images often leave it out.
  if (want.architecture == "arm64" && have.empty()) have = "v8";
  return have == want.variant;
}

// The error body of a registry reply in one short escaped line (" - server message: …"),
// read at most kMaxErrorBodyBytes; containerd remotes/docker/fetcher.go open() appends it the
// same way.
std::string ErrorDetail(HttpResponse& response) {
  absl::StatusOr<std::string> body = response.ReadAll(kMaxErrorBodyBytes);
  if (!body.ok()) return "";
  std::string text = RegistryErrorText(*body);
  return text.empty() ? "" : absl::StrCat(" - server message: ", text);
}

}  // namespace

std::string Reference::String() const {
  std::string out = absl::StrCat(registry, "/", repository);
  if (!tag.empty()) absl::StrAppend(&out, ":", tag);
  if (!digest.empty()) absl::StrAppend(&out, "@", digest);
  return out;
}

absl::StatusOr<Reference> ParseReference(std::string_view text) {
  if (text.empty() || text.size() > 4096) return BadReference(text, "empty or too long");
  Reference ref;
  std::string_view name = text;
  if (size_t at = name.find('@'); at != std::string_view::npos) {
    ref.digest = std::string(name.substr(at + 1));
    name = name.substr(0, at);
    if (!IsDigest(ref.digest)) return BadReference(text, "digest is not sha256:<64 hex>");
  }
  size_t last_slash = name.rfind('/');
  size_t colon = name.rfind(':');
  if (colon != std::string_view::npos &&
      (last_slash == std::string_view::npos || colon > last_slash)) {
    ref.tag = std::string(name.substr(colon + 1));
    name = name.substr(0, colon);
    if (!std::regex_match(ref.tag, TagPattern())) return BadReference(text, "bad tag");
  }
  // The first component is a registry if it looks like a host (docker's rule).
  std::string_view first = name.substr(0, name.find('/'));
  std::string_view path = name;
  if (first.size() < name.size() &&
      (first.find_first_of(".:") != std::string_view::npos || first == "localhost" ||
       absl::AsciiStrToLower(ToAbsl(first)) != ToAbsl(first))) {
    ref.registry = std::string(first);
    path = name.substr(first.size() + 1);
    if (!std::regex_match(ref.registry, DomainPattern())) return BadReference(text, "bad registry");
  } else {
    ref.registry = "docker.io";
  }
  if (ref.registry == "index.docker.io") ref.registry = "docker.io";
  if (path.empty() || path.size() > 255) return BadReference(text, "empty or too long name");
  for (size_t start = 0; start <= path.size();) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string component(path.substr(start, end - start));
    if (!std::regex_match(component, PathComponent())) {
      return BadReference(text, absl::StrCat("bad repository component \"", component, "\""));
    }
    start = end + 1;
  }
  ref.repository = std::string(path);
  if (ref.registry == "docker.io" && ref.repository.find('/') == std::string::npos) {
    ref.repository = absl::StrCat("library/", ref.repository);
  }
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
  return ref;
}

RegistryClient::RegistryClient(RegistryClientOptions options)
    : options_(std::move(options)), http_(options_.timeouts), auth_(http_, options_.credentials) {}

void RegistryClient::Backoff(int attempt) const {
  auto delay = options_.retry.initial_backoff * (1LL << std::min(attempt, 16));
  std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(
      std::chrono::duration_cast<std::chrono::milliseconds>(delay), options_.retry.max_backoff));
}

absl::StatusOr<std::unique_ptr<HttpResponse>> RegistryClient::TryHost(const RegistryHost& host,
                                                                      const Reference& ref,
                                                                      const std::string& suffix,
                                                                      HttpHeaders headers) {
  absl::StatusOr<Url> url = host.MakeUrl(absl::StrCat("/", ref.repository, suffix));
  if (!url.ok()) return url.status();
  // Mirrors learn which upstream is meant (containerd's ?ns=).
  if (host.is_mirror) url->target += absl::StrCat("?ns=", QueryEscape(ref.registry));
  HttpRequest request;
  request.url = *url;
  request.headers = host.headers;
  request.headers.insert(request.headers.end(), headers.begin(), headers.end());
  const std::string scope = absl::StrCat("repository:", ref.repository, ":pull");
  bool sent_auth = false;
  if (auto cached = auth_.Cached(host.authority, scope)) {
    request.headers.emplace_back("Authorization", *cached);
    sent_auth = true;
  }
  absl::StatusOr<std::unique_ptr<HttpResponse>> response = http_.Send(request, host.tls);
  if (!response.ok()) return response;
  if ((*response)->status() == 401) {
    if (sent_auth) {
      auth_.Invalidate(host.authority, scope);
      request.headers.pop_back();
    }
    absl::StatusOr<std::string> authorization =
        auth_.Authorize(host.authority, scope, (*response)->Headers("WWW-Authenticate"), host.tls);
    if (!authorization.ok()) return authorization.status();
    request.headers.emplace_back("Authorization", *authorization);
    response = http_.Send(request, host.tls);
    if (!response.ok()) return response;
  }
  int status = (*response)->status();
  if (status == 200 || status == 206) return response;
  std::string what =
      absl::StrCat("GET ", (*response)->url().String(), ": HTTP ", status, ErrorDetail(**response));
  switch (status) {
    case 404:
      return absl::NotFoundError(what);
    case 401:
      return absl::UnauthenticatedError(what);
    case 403:
      return absl::PermissionDeniedError(what);
    case 408:
    case 429:
      return absl::UnavailableError(what);
    default:
      if (status >= 500) return absl::UnavailableError(what);
      return absl::FailedPreconditionError(what);
  }
}

absl::StatusOr<std::unique_ptr<HttpResponse>> RegistryClient::Fetch(
    const Reference& ref, const std::string& suffix, uint32_t capability,
    const HttpHeaders& extra_headers, std::optional<uint64_t> range_start) {
  absl::StatusOr<std::vector<RegistryHost>> hosts = ConfigureHosts(ref.registry, options_.hosts);
  if (!hosts.ok()) return hosts.status();
  std::vector<const RegistryHost*> candidates;
  for (const RegistryHost& h : *hosts) {
    if (h.capabilities & capability) candidates.push_back(&h);
  }
  if (candidates.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no configured host of ", ref.registry, " can serve ", suffix));
  }
  HttpHeaders headers = extra_headers;
  if (range_start) headers.emplace_back("Range", absl::StrCat("bytes=", *range_start, "-"));

  absl::Status last;
  for (int attempt = 0; attempt < std::max(1, options_.retry.max_attempts); ++attempt) {
    if (attempt > 0) Backoff(attempt - 1);
    bool all_not_found = true;
    for (const RegistryHost* host : candidates) {
      absl::StatusOr<std::unique_ptr<HttpResponse>> r = TryHost(*host, ref, suffix, headers);
      if (r.ok()) return r;
      const bool last_host = host == candidates.back();
      // A mirror that lacks the object or cannot authenticate us hands over to the next host.
      const bool next_host =
          absl::IsUnavailable(r.status()) ||
          (host->is_mirror && !last_host &&
           (absl::IsNotFound(r.status()) || absl::IsUnauthenticated(r.status()) ||
            absl::IsPermissionDenied(r.status())));
      if (!next_host) return r.status();
      if (!absl::IsNotFound(r.status())) all_not_found = false;
      last = r.status();
    }
    if (all_not_found) return last;
  }
  return absl::UnavailableError(absl::StrCat(ref.registry, "/", ref.repository, suffix, ": ",
                                             options_.retry.max_attempts,
                                             " attempts failed; last: ", last.message()));
}

absl::StatusOr<Manifest> RegistryClient::GetManifest(const Reference& ref,
                                                     const Platform& platform) {
  return FetchManifest(ref, ref.digest.empty() ? ref.tag : ref.digest, platform, 0);
}

absl::StatusOr<Manifest> RegistryClient::FetchManifest(const Reference& ref,
                                                       const std::string& reference,
                                                       const Platform& platform, int depth) {
  const bool by_digest = IsDigest(reference);
  HttpHeaders headers = {{"Accept", absl::StrCat(kOciIndex, ", ", kOciManifest, ", ", kDockerList,
                                                 ", ", kDockerManifest)}};
  absl::StatusOr<std::unique_ptr<HttpResponse>> response =
      Fetch(ref, absl::StrCat("/manifests/", reference),
            by_digest ? kCapabilityPull : kCapabilityResolve, headers, std::nullopt);
  if (!response.ok()) return response.status();
  std::string content_type = (*response)->Header("Content-Type").value_or("");
  content_type =
      std::string(absl::StripAsciiWhitespace(content_type.substr(0, content_type.find(';'))));
  absl::StatusOr<std::string> bytes = (*response)->ReadAll(options_.max_manifest_bytes);
  if (!bytes.ok()) return bytes.status();
  std::string digest = Sha256Digest(std::as_bytes(std::span<const char>(*bytes)));
  const std::string where =
      absl::StrCat("manifest ", ref.registry, "/", ref.repository, "@", reference);
  if (by_digest && digest != reference) {
    return absl::DataLossError(absl::StrCat(where, ": content has digest ", digest));
  }
  absl::StatusOr<ParsedManifest> parsed = ParseManifestJson(*bytes, content_type, where);
  if (!parsed.ok()) return parsed.status();

  if (parsed->is_index) {
    if (depth > 0) return absl::InvalidArgumentError(absl::StrCat(where, ": nested index"));
    for (const IndexEntry& m : parsed->manifests) {
      if (!m.has_platform || m.platform.os != platform.os ||
          m.platform.architecture != platform.architecture ||
          !VariantMatches(platform, m.platform)) {
        continue;
      }
      absl::StatusOr<Manifest> chosen =
          FetchManifest(ref, m.descriptor.digest, platform, depth + 1);
      if (chosen.ok()) chosen->index_digest = digest;
      return chosen;
    }
    return absl::NotFoundError(absl::StrCat(where, ": no manifest for platform ", platform.os, "/",
                                            platform.architecture,
                                            platform.variant.empty() ? "" : "/", platform.variant));
  }
  Manifest out;
  out.media_type = std::move(parsed->media_type);
  out.digest = digest;
  out.config = std::move(parsed->config);
  out.layers = std::move(parsed->layers);
  out.bytes = *std::move(bytes);
  return out;
}

absl::StatusOr<std::unique_ptr<ByteSource>> RegistryClient::GetBlob(
    const Reference& ref, std::string_view digest, std::optional<uint64_t> expected_size) {
  if (!IsDigest(digest)) {
    return absl::InvalidArgumentError(
        absl::StrCat("blob digest \"", ToAbsl(digest), "\" is not sha256:<64 hex>"));
  }
  auto source = std::make_unique<RegistryBlobSource>(*this, ref, std::string(digest), expected_size,
                                                     options_.retry);
  if (absl::Status s = source->Open(); !s.ok()) return s;
  return std::unique_ptr<ByteSource>(std::move(source));
}

absl::StatusOr<std::string> RegistryClient::FetchBlobToString(const Reference& ref,
                                                              std::string_view digest,
                                                              size_t max_bytes) {
  absl::StatusOr<std::unique_ptr<ByteSource>> source = GetBlob(ref, digest);
  if (!source.ok()) return source.status();
  std::string out;
  std::byte chunk[16 * 1024];
  for (;;) {
    absl::StatusOr<size_t> n = (*source)->Read(chunk);
    if (!n.ok()) return n.status();
    if (*n == 0) return out;
    if (out.size() + *n > max_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "blob ", ToAbsl(digest), " of ", ref.repository, " exceeds ", max_bytes, " bytes"));
    }
    out.append(reinterpret_cast<const char*>(chunk), *n);
  }
}

}  // namespace zsnap::unpack
