// Directory-tree primitives the snapshotter builds its layout with: unique temporary
// directories, recursive removal, fsync of a directory, and disk usage as containerd's
// fs.DiskUsage counts it (continuity fs/du_unix.go).
//
// The tree walks (RemoveTree, DiskUsage) are overlay/tree_walk.h's: through file descriptors
// (openat/unlinkat with O_NOFOLLOW), so they never follow a symbolic link out of the tree and
// are not limited by PATH_MAX; iterative, with a bounded number of open descriptors and no
// recursion, so a container's 40,000-deep directory costs neither stack nor EMFILE.
//
// Stateless; safe from any thread, but two calls racing on the same tree see each other's
// effects (removal treats entries that vanish underneath it as removed).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "overlay/types.h"

namespace zsnap::overlay {

// Creates <parent>/<prefix>XXXXXX (mode 0700) and returns its path.
absl::StatusOr<std::string> MakeTempDir(absl::string_view parent, absl::string_view prefix);

// Creates `path` with exactly `mode`, whatever the process umask.
absl::Status MakeDirWithMode(const std::string& path, mode_t mode);

// The names in directory `path`, without "." and "..".
absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path);

// Removes `path` and everything below it. A missing `path` is not an error.
absl::Status RemoveTree(const std::string& path);

// fsync(2) of a directory, so a rename or create inside it is durable.
absl::Status FsyncDir(const std::string& path);

// Size (sum of st_blocks * 512) and inode count of the tree at `path`, each inode counted
// once however many hard links it has. Entries that vanish during the walk are skipped;
// a missing `path` is NotFound.
absl::StatusOr<Usage> DiskUsage(const std::string& path);

}  // namespace zsnap::overlay
