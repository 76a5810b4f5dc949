// Registry host configuration in containerd's format: <dir>/<registry>/hosts.toml (dir
// default /etc/containerd/certs.d, <registry> as in the image reference, e.g. "docker.io" or
// "127.0.0.1:5000", then <dir>/_default), parsed with toml++:
//
//   server = "https://registry.example"          # upstream; default https://<registry>
//   ca = "ca.pem"                                # applies to the server entry
//   [host."http://mirror.local:5000"]            # mirrors, tried in file order
//     capabilities = ["pull", "resolve"]
//     ca = ["/etc/certs/a.pem"]                  # string or list; relative to the dir
//     client = [["client.cert", "client.key"]]   # or "both.pem", or a list of those
//     skip_verify = true
//     override_path = true                       # path used as-is instead of <path>/v2
//     [host."http://mirror.local:5000".header]
//       x-custom = "value"
//
// A directory without hosts.toml contributes legacy docker certs.d files to the upstream:
// *.crt as CAs and *.cert/*.key pairs as client certificates.
//
// Stateless functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "unpack/http_client.h"

namespace zsnap::unpack {

enum HostCapability : uint32_t {
  kCapabilityPull = 1u << 0,     // fetch blobs (and manifests by digest)
  kCapabilityResolve = 1u << 1,  // resolve tags to digests
  kCapabilityPush = 1u << 2,
};
inline constexpr uint32_t kAllCapabilities = kCapabilityPull | kCapabilityResolve | kCapabilityPush;

// One endpoint for a registry: a mirror or the upstream server.
struct RegistryHost {
  std::string scheme;     // "http" or "https"
  std::string authority;  // "host" or "host:port"
  std::string path;       // API root, e.g. "/v2"
  uint32_t capabilities = kAllCapabilities;
  TlsOptions tls;
  HttpHeaders headers;
  bool is_mirror = false;  // false for the `server` entry

  // scheme://authority + path + suffix, suffix starting with '/'.
  absl::StatusOr<Url> MakeUrl(std::string_view suffix) const;
};

struct HostsConfigOptions {
  std::string config_dir = "/etc/containerd/certs.d";  // empty: no files, defaults only
};

// Parses hosts.toml `content` for `registry`; relative file names resolve against `base_dir`.
// Mirrors come first in file order, the server last. InvalidArgument on bad TOML or values.
absl::StatusOr<std::vector<RegistryHost>> ParseHostsToml(std::string_view content,
                                                         std::string_view registry,
                                                         const std::string& base_dir);

// The hosts to try for `registry`, in order. Without any configuration: one upstream host,
// https://registry-1.docker.io for docker.io, https://<registry> otherwise.
absl::StatusOr<std::vector<RegistryHost>> ConfigureHosts(std::string_view registry,
                                                         const HostsConfigOptions& options);

}  // namespace zsnap::unpack
