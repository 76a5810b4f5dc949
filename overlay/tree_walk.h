// Whole-tree walks that cost a bounded number of file descriptors and no stack, whatever the
// depth: removal (Go's os.RemoveAll) and disk usage (containerd's fs.DiskUsage). The trees
// come from containers (a snapshot's rw directory), so they are hostile: 40,000 levels deep,
// millions of entries, or changing while they are walked.
//
// How: an explicit stack of directories, walked down with openat(O_NOFOLLOW) (a symlink is
// never followed) and back up through "..". At most kTreeWalkMaxOpenDirs of them are open;
// when a walk goes deeper, the shallowest open one is closed (remembering its readdir
// position) and, on the way back, reopened as ".." of its child and checked to be the same
// (st_dev, st_ino). A directory moved meanwhile (a running container renaming) makes the walk
// fail with Aborted instead of walking somewhere else. Memory is one name per level plus the
// hard-linked inodes seen.
//
// This is the one implementation of both walks: overlay's RemoveTree/DiskUsage use it, and so
// does the tar extractor (unpack/ depends on overlay/) when an entry replaces a directory.
//
// Stateless; safe from any thread. Two walks racing on one tree see each other's effects
// (removal treats entries that vanish underneath it as removed).
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "overlay/types.h"

namespace zsnap::overlay {

// The most directories one walk holds open; it also uses up to two more descriptors for a
// moment (a child being opened, a parent being reopened).
inline constexpr int kTreeWalkMaxOpenDirs = 8;

// Removes `name` in directory `dirfd` (AT_FDCWD: `name` is a path) and, if it is a
// directory, everything below it. Symlinks are removed, never followed. A missing `name` is
// not an error.
absl::Status RemoveTreeAt(int dirfd, const char* name);

// Size (sum of st_blocks * 512) and inode count of the tree at `name` in `dirfd`, each inode
// counted once however many hard links it has (containerd fs/du_unix.go diskUsage). Entries
// that vanish during the walk are skipped; a missing `name` is NotFound.
absl::StatusOr<Usage> DiskUsageAt(int dirfd, const char* name);

}  // namespace zsnap::overlay
