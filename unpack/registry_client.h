// An OCI Distribution (Registry API v2) client for pulls: image references, manifests (OCI
// and Docker schema 2; an index or manifest list is resolved to one platform's manifest) and
// blobs streamed as a ByteSource straight into the unpack pipeline.
//
// For each request the hosts of the reference's registry (hosts_config.h: mirrors in order,
// then the server) are tried in turn; a host that fails transiently (refused, reset, timeout,
// 429, 5xx) or a mirror that lacks the object hands over to the next, and whole rounds are
// retried with exponential backoff. Authentication is anonymous first, then whatever the 401
// asks for (registry_auth.h) with the host's credentials (docker_credentials.h).
//
// A blob body is read incrementally from the connection (never buffered whole); when the
// connection breaks mid-body the source re-requests the blob with `Range: bytes=<offset>-`,
// checks the 206 Content-Range starts at that offset (a 200 answer is skipped forward to the
// offset, as containerd does), and carries on, so every byte reaches the caller exactly once.
// The caller verifies blob digests (the unpack pipeline does); manifests are verified here
// when pulled by digest.
//
// Errors: NotFound (404 everywhere), Unauthenticated (401 after authenticating, or missing
// credentials), PermissionDenied (403), Unavailable (network trouble, 5xx, retries used up),
// DataLoss (manifest digest or blob size mismatch), InvalidArgument (bad reference or
// manifest), Unimplemented (schema 1 manifests, unknown auth schemes).
//
// Ownership and thread safety: RegistryClient methods may be called concurrently from many
// threads (each request is a blocking call on the caller's thread, see http_client.h). A
// blob ByteSource refers to its client, which must outlive it, and is used by one thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "unpack/hosts_config.h"
#include "unpack/http_client.h"
#include "unpack/registry_auth.h"
#include "unpack/unpack.h"

namespace zsnap::unpack {

// An image reference "[host[:port]/]repo[:tag][@digest]", normalised as docker does: no
// registry component means docker.io, and a one-component docker.io repository gets
// "library/"; a reference with neither tag nor digest means ":latest".
struct Reference {
  std::string registry;    // "docker.io", "127.0.0.1:5000"
  std::string repository;  // "library/busybox"
  std::string tag;         // empty when only a digest is given
  std::string digest;      // "sha256:<hex>" or empty

  std::string String() const;  // canonical form, e.g. "docker.io/library/busybox:latest"
};

// InvalidArgument for references docker would reject (upper case repository, bad tag or
// digest, empty components).
absl::StatusOr<Reference> ParseReference(std::string_view text);

struct Platform {
  std::string os = "linux";
  std::string architecture = "amd64";
  std::string variant;  // empty: any variant
};

struct Descriptor {
  std::string media_type;
  std::string digest;
  uint64_t size = 0;
  std::vector<std::string> urls;
  std::map<std::string, std::string> annotations;
};

struct Manifest {
  std::string media_type;    // of the image manifest itself
  std::string digest;        // "sha256:<hex>" of `bytes`
  std::string bytes;         // exactly as served
  std::string index_digest;  // the index it was selected from, or empty
  Descriptor config;
  std::vector<Descriptor> layers;
};

// containerd remotes/docker/resolver.go MaxManifestSize (4 * 1048 * 1048 bytes, sic): the
// largest manifest or index accepted during resolution.
inline constexpr size_t kMaxManifestBytes = 4 * 1048 * 1048;
// Image configs are read whole into memory; containerd bounds them by the descriptor size
// only (content.ReadBlob), zsnap by this as well.
inline constexpr size_t kMaxConfigBytes = 8 << 20;

struct RetryPolicy {
  int max_attempts = 4;  // rounds over all hosts, and resumes without progress for a blob
  std::chrono::milliseconds initial_backoff{200};
  std::chrono::milliseconds max_backoff{5'000};
};

struct RegistryClientOptions {
  HostsConfigOptions hosts;
  CredentialsLookup credentials;  // null: anonymous only
  HttpTimeouts timeouts;
  RetryPolicy retry;
  size_t max_manifest_bytes = kMaxManifestBytes;
};

class RegistryClient {
 public:
  explicit RegistryClient(RegistryClientOptions options);

  // The image manifest for `ref`; an index is resolved to the first entry matching
  // `platform`.
  absl::StatusOr<Manifest> GetManifest(const Reference& ref, const Platform& platform = {});

  // Streams blob `digest` of `ref.repository`. `expected_size` (the descriptor's size) bounds
  // the body and detects truncation where the server sends no length.
  absl::StatusOr<std::unique_ptr<ByteSource>> GetBlob(
      const Reference& ref, std::string_view digest,
      std::optional<uint64_t> expected_size = std::nullopt);

  // A small blob (an image config) in memory; ResourceExhausted past `max_bytes`.
  absl::StatusOr<std::string> FetchBlobToString(const Reference& ref, std::string_view digest,
                                                size_t max_bytes = 4 << 20);

  const HttpClient& http() const { return http_; }

 private:
  friend class RegistryBlobSource;

  // GETs `suffix` ("/manifests/<ref>", "/blobs/<digest>") of ref.repository on the first
  // host with `capability` that answers 200 (or 206 when `range_start` is set).
  absl::StatusOr<std::unique_ptr<HttpResponse>> Fetch(const Reference& ref,
                                                      const std::string& suffix,
                                                      uint32_t capability,
                                                      const HttpHeaders& extra_headers,
                                                      std::optional<uint64_t> range_start);
  absl::StatusOr<std::unique_ptr<HttpResponse>> TryHost(const RegistryHost& host,
                                                        const Reference& ref,
                                                        const std::string& suffix,
                                                        HttpHeaders headers);
  absl::StatusOr<Manifest> FetchManifest(const Reference& ref, const std::string& reference,
                                         const Platform& platform, int depth);
  void Backoff(int attempt) const;

  RegistryClientOptions options_;
  HttpClient http_;
  RegistryAuth auth_;
};

}  // namespace zsnap::unpack
