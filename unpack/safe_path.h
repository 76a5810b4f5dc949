// Path confinement for the tar extractor: every name in a layer is resolved inside the
// destination directory the way containerd's fs.RootPath bounds it, so `..`, absolute paths
// and symlinks (absolute or relative, in any component but the last) all stay inside.
//
// The kernel does the confined walk: openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
// relative to a directory fd opened once. Entries are then created with *at() syscalls on a
// single, never-followed last component. Missing parents are created (0755, containerd's
// mkparent), following a dangling symlink into the root as RootPath does.
//
// Ownership: SafeRoot owns the root fd and a one-entry cache of the last parent directory
// (consecutive entries of a tar stream usually share a parent). Not thread-safe: one
// extraction thread uses it.
#pragma once

#include <sys/stat.h>

#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace zsnap::unpack {

// An owned file descriptor (-1 = none), closed on destruction.
class ScopedFd {
 public:
  ScopedFd() = default;
  explicit ScopedFd(int fd) : fd_(fd) {}
  ScopedFd(ScopedFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  ScopedFd& operator=(ScopedFd&& other) noexcept {
    if (this != &other) Reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~ScopedFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() { return std::exchange(fd_, -1); }
  void Reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Lexically cleans a tar name the way Go's filepath.Clean does and then drops what resolves to
// the root anyway (a leading "/" and leading ".." components): the result is relative, has no
// "", "." or ".." components and no trailing slash; "" means the root itself. Reuses `out`.
void CleanEntryPath(std::string_view name, std::string& out);

// Splits a cleaned path into its parent ("" for the root) and last component.
std::pair<std::string_view, std::string_view> SplitParent(std::string_view clean);

class SafeRoot {
 public:
  static absl::StatusOr<SafeRoot> Open(const std::string& dest);

  SafeRoot(SafeRoot&&) = default;
  SafeRoot& operator=(SafeRoot&&) = default;

  int fd() const { return root_.get(); }

  // The directory at cleaned path `dir` ("" = root), resolved inside the root; missing
  // directories are created when `create`. The fd belongs to the cache and stays valid until
  // the next Dir() call. Errors: NotFound (missing, !create), FailedPrecondition
  // (ENOTDIR: a component is not a directory), ELOOP for symlink cycles.
  absl::StatusOr<int> Dir(std::string_view dir, bool create);

  // Forgets the cached directory if it is `dir`, whose mode or owner a directory entry just
  // changed, so dir_stat() does not report it stale. Invalidates the fd Dir() returned for it.
  void Forget(std::string_view dir) {
    if (dir == cached_path_) cached_fd_.Reset();
  }

  // fstat of the directory the last successful Dir() returned (its identity, and the mode
  // and group new entries in it inherit).
  const struct stat& dir_stat() const { return last_stat_; }

  // openat2(root, path, flags) confined to the root; `path` need not be clean (a hardlink
  // target's raw parent). No creation.
  absl::StatusOr<ScopedFd> OpenInRoot(std::string_view path, int flags);

 private:
  explicit SafeRoot(ScopedFd root) : root_(std::move(root)) {}
  absl::StatusOr<ScopedFd> CreateDirs(std::string_view dir);

  ScopedFd root_;
  // The last directory Dir() returned. Only removals can change what a path resolves to,
  // and an entry only removes names inside its own parent, never the parent itself; an
  // entry in another directory replaces the cache first. So the single entry cannot go
  // stale.
  std::string cached_path_;
  ScopedFd cached_fd_;
  struct stat root_stat_ = {};
  struct stat cached_stat_ = {};
  struct stat last_stat_ = {};
};

// Removes `name` in `dirfd` and, if it is a directory, everything below it (os.RemoveAll),
// never following symlinks. A missing name is not an error. Iterative, with a bounded number
// of descriptors whatever the depth (overlay/tree_walk.h RemoveTreeAt).
absl::Status RemoveAllAt(int dirfd, const char* name);

}  // namespace zsnap::unpack
