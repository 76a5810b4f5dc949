// Registry credentials from a docker config.json, as the docker CLI and containerd's CRI read
// it:
//   {"auths": {"registry.example": {"auth": "base64(user:pass)"}},   // or username/password
//    "credHelpers": {"registry.example": "pass"},                      // per-host helper
//    "credsStore": "secretservice"}                                    // default helper
// Lookup order for a host: credHelpers[host], then credsStore, then auths (auths also when a
// helper knows nothing). A helper is the program docker-credential-<name>, run as
// `docker-credential-<name> get` with the server URL on stdin; it prints
// {"ServerURL":…,"Username":…,"Secret":…} or exits non-zero with exactly "credentials not
// found in native keychain" on stdout. The helper runs in its own process group with a
// deadline covering its output and its exit; at the deadline the whole group is killed.
// Its output is bounded, parsed with type checks, and never copied into a message (a failing
// helper may still print a secret).
// Docker Hub is keyed as https://index.docker.io/v1/ in both places.
//
// Identity tokens (OAuth refresh tokens: "identitytoken", or a helper's Username "<token>")
// are not supported; such entries are treated as anonymous so public pulls still work.
//
// Thread safety: a DockerCredentials is immutable after Load and may be shared; Lookup may
// run helpers concurrently.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "unpack/registry_auth.h"

namespace zsnap::unpack {

struct DockerCredentialsOptions {
  // Empty: $DOCKER_CONFIG/config.json, else $HOME/.docker/config.json.
  std::string config_path;
  // Directories searched for docker-credential-<name>, ':'-separated; empty: $PATH.
  std::string helper_search_path;
  std::chrono::milliseconds helper_timeout{10'000};
  size_t max_helper_output = 64 * 1024;
};

class DockerCredentials {
 public:
  // Reads the config file; a missing file is an empty configuration (anonymous everywhere).
  static absl::StatusOr<DockerCredentials> Load(DockerCredentialsOptions options = {});
  // Parses config.json text. InvalidArgument for bad JSON, bad "auth" values or fields of the
  // wrong JSON type (null counts as missing, as in Go's encoding/json).
  static absl::StatusOr<DockerCredentials> Parse(std::string_view json,
                                                 DockerCredentialsOptions options = {});

  // Credentials for a registry authority ("docker.io", "host:5000"); empty when none.
  // A failing helper (other than "not found") is Unavailable.
  absl::StatusOr<Credentials> Lookup(std::string_view authority) const;

  // As a CredentialsLookup for RegistryAuth (copies this object).
  CredentialsLookup AsLookup() const;

 private:
  DockerCredentials() = default;

  DockerCredentialsOptions options_;
  std::map<std::string, Credentials> auths_;  // key: normalised host
  std::map<std::string, std::string> cred_helpers_;
  std::string creds_store_;
};

// Runs `docker-credential-<helper> get` for `server_url`. OK with empty Credentials when the
// helper reports "credentials not found"; NotFound when the program is missing; Unavailable
// on a failure exit, a crash, a timeout (its process group is killed) or oversized/malformed
// output.
absl::StatusOr<Credentials> RunCredentialHelper(const std::string& helper,
                                                std::string_view server_url,
                                                const DockerCredentialsOptions& options);

}  // namespace zsnap::unpack
