// The daemon's configuration: a TOML file (toml++), every key optional.
//
//   # Directory holding metadata.db and snapshots/<id>/{fs,work}. Created 0700 if missing.
//   # Must be an absolute path on a filesystem that supports overlayfs upper directories.
//   root = "/var/lib/zsnap"
//
//   # Unix socket path containerd dials ([proxy_plugins.<name>] address). Its directory is
//   # created 0700; a stale socket left by a previous run is removed.
//   address = "/run/zsnap/zsnap.sock"
//
//   # trace | debug | info | warn | error | critical | off
//   log_level = "info"
//
//   # text (key=value) | json (one object per line)
//   log_format = "text"
//
//   # Add "userxattr" to overlay mounts: auto (only inside a user namespace) | on | off
//   userxattr = "auto"
//
//   [unpack]
//   # Writer threads per layer; 0 chooses from the CPU count. 0..1024.
//   writer_threads = 0
//   # Upper bound on the uncompressed tar stream of one layer, in bytes (> 0).
//   max_uncompressed_bytes = 68719476736   # 64 GiB
//   # Largest zstd window accepted (ZSTD_d_windowLogMax), 10..31; 29 = 512 MiB, the limit
//   # of containerd's own zstd decoder. Memory per layer: the declared window + ~0.5 MiB.
//   zstd_window_log_max = 29
//
//   [remote]
//   # Fetch and unpack layers itself when containerd prepares them with the target and CRI
//   # labels (CRI with disable_snapshot_annotations = false); false: plain overlayfs.
//   enabled = true
//   # containerd-style hosts.toml tree (<dir>/<host>/hosts.toml: mirrors, CAs, client certs,
//   # skip_verify, plain HTTP). Point it at the directory containerd's CRI uses.
//   hosts_dir = "/etc/containerd/certs.d"
//   # docker config.json with registry credentials (auths, credsStore, credHelpers);
//   # empty: $DOCKER_CONFIG/config.json, else $HOME/.docker/config.json.
//   docker_config = ""
//   # Layers fetched+unpacked at once, over all images (1..256) and per image (1..256).
//   max_concurrent_layers = 3
//   max_concurrent_layers_per_image = 3
//   # A staged layer no Prepare claims within this many seconds is deleted.
//   unclaimed_ttl_s = 600
//   # Registry timeouts (seconds) and attempts per request (1..100).
//   connect_timeout_s = 30
//   io_timeout_s = 60
//   max_attempts = 4
//
//   [metrics]
//   # Prometheus endpoint (HTTP GET /metrics): "IP:PORT" ("127.0.0.1:9464", "[::1]:9464"; port
//   # 0 = a free port, logged as metrics_serving) or "unix:///absolute/path". "" = none.
//   address = ""
//
//   [reports]
//   # Image pull reports kept under <root>/reports for `zsnap stats`, newest first; 0 keeps
//   # none. 0..100000.
//   keep = 100
//
// Unknown keys, wrong types and out-of-range values are errors whose message names the file,
// line and column. Load() and Parse() never throw.
//
// Thread safety: Config is a plain value; the functions are pure (Load reads one file).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "overlay/snapshotter.h"
#include "plugin/logging.h"
#include "spdlog/common.h"
#include "unpack/unpack.h"

namespace zsnap::plugin {

inline constexpr char kDefaultRoot[] = "/var/lib/zsnap";
inline constexpr char kDefaultAddress[] = "/run/zsnap/zsnap.sock";

struct UnpackConfig {
  int writer_threads = 0;
  uint64_t max_uncompressed_bytes = unpack::UnpackLimits{}.max_uncompressed_bytes;
  int zstd_window_log_max = unpack::UnpackLimits{}.zstd_window_log_max;

  unpack::UnpackLimits Limits() const;

  friend bool operator==(const UnpackConfig&, const UnpackConfig&) = default;
};

struct RemoteConfig {
  bool enabled = true;
  std::string hosts_dir = "/etc/containerd/certs.d";
  std::string docker_config;
  int max_concurrent_layers = 3;
  int max_concurrent_layers_per_image = 3;
  int unclaimed_ttl_s = 600;
  int connect_timeout_s = 30;
  int io_timeout_s = 60;
  int max_attempts = 4;

  friend bool operator==(const RemoteConfig&, const RemoteConfig&) = default;
};

// [metrics]
struct MetricsConfig {
  std::string address;  // empty: no metrics endpoint; else see ParseMetricsAddress

  friend bool operator==(const MetricsConfig&, const MetricsConfig&) = default;
};

// [reports]
inline constexpr int kMaxReportsKeep = 100000;
struct ReportsConfig {
  int keep = 100;  // 0: no report history

  friend bool operator==(const ReportsConfig&, const ReportsConfig&) = default;
};

struct Config {
  std::string root = kDefaultRoot;
  std::string address = kDefaultAddress;
  spdlog::level::level_enum log_level = spdlog::level::info;
  LogFormat log_format = LogFormat::kText;
  overlay::SnapshotterOptions::UserXattr userxattr = overlay::SnapshotterOptions::UserXattr::kAuto;
  UnpackConfig unpack;
  RemoteConfig remote;
  MetricsConfig metrics;
  ReportsConfig reports;

  // Reads and parses the TOML file at `path`.
  static absl::StatusOr<Config> Load(const std::string& path);
  // Parses TOML `text`; `source` names it in messages (a path, or "<string>").
  static absl::StatusOr<Config> Parse(absl::string_view text, const std::string& source);

  // Checks what a command line may have overridden: root and address absolute, non-empty.
  absl::Status Validate() const;

  // The configuration as a TOML document that Parse() reads back to an equal Config.
  std::string ToToml() const;

  friend bool operator==(const Config&, const Config&) = default;
};

absl::StatusOr<overlay::SnapshotterOptions::UserXattr> ParseUserXattr(absl::string_view name);
absl::string_view UserXattrName(overlay::SnapshotterOptions::UserXattr mode);

}  // namespace zsnap::plugin
