// The mounts containerd performs to assemble a snapshot, in exactly the shapes of containerd's
// overlayfs snapshotter (snapshots/overlay/overlay.go `mounts`):
//
//   no parent                 bind <fs> [rw|ro, rbind]          (ro for a View)
//   View with one parent      bind <parent fs> [ro, rbind]
//   otherwise                 overlay "overlay" [index=off] [userxattr]
//                                     [workdir=<work>, upperdir=<fs>]   (Active only)
//                                     lowerdir=<nearest parent fs>:...:<oldest fs>
//
// and the host probes that decide the optional overlay options. Every layer lives under one
// snapshots directory, so containerd can shorten a long lowerdir relative to it.
//
// Pure functions apart from the probes, which only read files; safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "overlay/types.h"

namespace zsnap::overlay {

struct MountConfig {
  std::string snapshots_dir;  // <root>/snapshots
  bool index_off = false;     // add "index=off"
  bool userxattr = false;     // add "userxattr"
};

// `parent_ids` runs from the nearest parent to the oldest. `kind` is kActive or kView.
std::vector<Mount> BuildMounts(const MountConfig& config, Kind kind, int64_t id,
                               const std::vector<int64_t>& parent_ids);

// <snapshots_dir>/<id>/fs and <snapshots_dir>/<id>/work.
std::string UpperPath(absl::string_view snapshots_dir, int64_t id);
std::string WorkPath(absl::string_view snapshots_dir, int64_t id);

// containerd passes "index=off" whenever the overlay module has an `index` parameter, so that
// mounts keep working when lower layers are re-used under other upper directories.
inline constexpr absl::string_view kOverlayIndexParam = "/sys/module/overlay/parameters/index";
bool OverlayHasIndexParam(const std::string& param_path = std::string(kOverlayIndexParam));

// containerd's overlayutils.NeedsUserXAttr fast path: "userxattr" is needed only inside a user
// namespace (uid_map not the identity "0 0 4294967295"), not on tmpfs, and the kernel must be
// 5.11 or newer. `dir` is the directory the layers live on.
struct UserxattrProbe {
  std::string uid_map_path = "/proc/self/uid_map";
  std::string kernel_release;  // empty: uname(2)
};
bool NeedsUserxattr(const std::string& dir, const UserxattrProbe& probe = {});

// True if `uid_map_text` maps the whole uid range onto itself (the initial user namespace).
bool IsIdentityUidMap(absl::string_view uid_map_text);
// True if a "major.minor..." kernel release is at least 5.11.
bool KernelAtLeast5_11(absl::string_view release);

}  // namespace zsnap::overlay
