// `zsnap config containerd`: the containerd configuration that registers zsnap, per containerd
// version, printed as a commented snippet or merged into an existing config.toml.
//
// What each version needs (../shared/containerd-api.md §2, §3):
//   1.6, 1.7  config version 2: [proxy_plugins.zsnap] type/address/exports.root;
//             [plugins."io.containerd.grpc.v1.cri".containerd] snapshotter = "zsnap",
//             disable_snapshot_annotations = false.
//   2.0       config version 3: the same proxy plugin; the CRI keys move to
//             [plugins.'io.containerd.cri.v1.images'].
//   2.1+      as 2.0, plus exports.enable_remote_snapshot_annotations = "true" and a transfer
//             service [[plugins.'io.containerd.transfer.v1.local'.unpack_config]] entry for zsnap
//             on this host's platform (ctr and CRI transfer pulls unpack only for listed
//             snapshotters).
//
// Merging parses the existing file with toml++, refuses a file whose config version does not
// match the requested containerd (1.x reads version 2, 2.x reads 3 or 4), sets only the keys
// above and keeps everything else. Setting unpack_config replaces containerd's built-in default
// list (this platform -> overlayfs), so when the file has none the default entry is written
// too. The file on disk is replaced atomically (temp file + rename) after a timestamped backup;
// a file that already has every key is left untouched (merging twice is a no-op). toml++ does
// not keep comments or key order: the backup holds the original text.
//
// Thread safety: pure functions, except MergeContainerdConfigFile (one file, not locked against
// concurrent writers).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace zsnap::plugin {

// The containerd release lines whose configuration differs.
enum class ContainerdSeries { k1_6, k1_7, k2_0, k2_1Plus };

// Accepts "1.6", "1.7", "2.0", "2.1", "2.x", "2", a full version ("1.6.20", "v2.1.9",
// "1.6.20~ds1") or later 2.y (treated as 2.1+). Anything before 1.6 or from 3 on is
// InvalidArgument.
absl::StatusOr<ContainerdSeries> ParseContainerdSeries(absl::string_view version);
absl::string_view ContainerdSeriesName(ContainerdSeries series);  // "1.6" .. "2.1+"
// The config file version containerd of that series reads: 2 for 1.x, 3 for 2.x.
int ConfigVersionFor(ContainerdSeries series);

// This host as an OCI platform: linux/amd64, linux/arm64, linux/arm/v7, ...
std::string HostPlatform();

struct ContainerdSnippetOptions {
  ContainerdSeries series = ContainerdSeries::k2_1Plus;
  std::string name = "zsnap";  // proxy plugin name = snapshotter name in CRI/transfer
  std::string address;         // zsnap's socket
  std::string root;            // zsnap's state root (exports.root)
  std::string platform;        // for unpack_config; empty = HostPlatform()
};

// The snippet as commented TOML, complete enough to be a whole config.toml.
std::string RenderContainerdSnippet(const ContainerdSnippetOptions& options);

struct ContainerdMerge {
  std::string text;                  // the merged document (== input when nothing changed)
  std::vector<std::string> changes;  // one line per key set, e.g. "proxy_plugins.zsnap.type"
  bool changed() const { return !changes.empty(); }
};

// Merges the snippet into the config text `existing` (`source` names it in messages).
// FailedPrecondition on a config version mismatch, InvalidArgument on bad TOML or a key of the
// wrong type in the way. An empty document (only comments) gets the rendered snippet appended.
absl::StatusOr<ContainerdMerge> MergeContainerdConfig(absl::string_view existing,
                                                      const std::string& source,
                                                      const ContainerdSnippetOptions& options);

// The `version` key of a containerd config text: 1 when absent (containerd's reading), or
// InvalidArgument if the text is not TOML or version is not an integer.
absl::StatusOr<int> ContainerdConfigVersion(absl::string_view text, const std::string& source);

struct ContainerdMergeFileResult {
  std::vector<std::string> changes;  // empty: the file already had everything, not rewritten
  std::string backup;                // path of the backup written, "" if none (new file)
  bool created = false;              // the file did not exist and was written from scratch
};

// Merges into the file at `path`: reads it (a missing file is created with the snippet),
// writes the backup `path.bak-<UTC yyyymmddThhmmssZ>` (never overwriting an older one), then
// writes the merged text to a temp file in the same directory with the original's mode and
// owner, fsyncs and renames it over `path`. A symlink is followed: the file it points to is
// replaced (and backed up next to it), the link stays.
absl::StatusOr<ContainerdMergeFileResult> MergeContainerdConfigFile(
    const std::string& path, const ContainerdSnippetOptions& options, absl::Time now);

}  // namespace zsnap::plugin
