// Path confinement for the tar extractor: every name in a layer is resolved inside the
// destination directory the way containerd's fs.RootPath (continuity fs/path.go) bounds it,
// so `..`, absolute paths and symlinks (absolute or relative, in any component but the last)
// all stay inside.
//
// Parent directories are resolved one component at a time below a root fd opened once, each
// with openat(O_NOFOLLOW | O_DIRECTORY): the kernel never follows a symlink for us. A symlink
// met on the way is read (readlinkat) and its target resolved the way RootPath does: joined
// lexically to the directory holding it (an absolute target restarts at the root, `..` never
// climbs above it), at most 255 links per path. Missing directories are created (0755,
// containerd's mkparent), following a dangling symlink into the root as RootPath does.
// Entries are then created with *at() syscalls on a single, never-followed last component.
//
// Cost (issue 11: a 266 KB layer of deep paths through symlinks kept the old resolver busy
// for ten minutes): SafeRoot keeps the chain of directories from the root to the last
// directory it returned, keyed by path. Consecutive entries in one directory cost no
// syscall; a sibling or a deeper directory costs one openat per new component; a symlink
// costs what its target adds. Every resolution is bounded: kMaxResolveSteps components,
// 255 links, PATH_MAX of resolved path. At most kMaxChainFds descriptors are held, whatever
// the depth; a closed level is reopened from its neighbour (by name going down, through ".."
// going up) and must be the same directory (st_dev, st_ino), else Aborted.
//
// Why the chain cannot go stale: it holds only the returned directory and its ancestors, and
// an entry only creates, replaces or removes names inside its own parent (the returned
// directory), never the parent or an ancestor of it. Dir() for another path drops what is
// not on the new chain before returning.
//
// Ownership: SafeRoot owns the root fd and the chain. Not thread-safe: one extraction thread
// uses it.
#pragma once

#include <linux/limits.h>
#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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
  // Components one Dir() may walk, counting those a symlink target adds: four times the
  // deepest path PATH_MAX allows, far beyond any real layer (a hostile one is refused
  // rather than re-walking long symlink targets 255 times per entry).
  static constexpr int kMaxResolveSteps = 4 * (PATH_MAX / 2);
  // Symlinks one Dir() may follow (containerd continuity fs/path.go maxSymlinkLimit).
  static constexpr int kMaxLinks = 255;
  // Descriptors the chain holds at most (besides the root's).
  static constexpr size_t kMaxChainFds = 8;

  static absl::StatusOr<SafeRoot> Open(const std::string& dest);

  SafeRoot(SafeRoot&&) = default;
  SafeRoot& operator=(SafeRoot&&) = default;

  int fd() const { return root_.get(); }

  // The directory at cleaned path `dir` ("" = root), resolved inside the root; missing
  // directories are created when `create`. The fd belongs to the chain and stays valid until
  // the next Dir() call. Errors: NotFound (missing, !create), FailedPrecondition (ENOTDIR: a
  // component is not a directory), ELOOP (more than kMaxLinks symlinks), ENAMETOOLONG
  // (resolved path of PATH_MAX or more), ResourceExhausted (more than kMaxResolveSteps
  // components), Aborted (a directory of the chain was moved by someone else).
  absl::StatusOr<int> Dir(std::string_view dir, bool create);

  // Forgets the cached chain if it passes through `dir` (lexically), whose mode or owner a
  // directory entry just changed, so dir_stat() does not report it stale. Invalidates the
  // fd Dir() returned if that is `dir` or below it.
  void Forget(std::string_view dir);

  // fstat of the directory the last successful Dir() returned (its identity, and the mode
  // and group new entries in it inherit).
  const struct stat& dir_stat() const { return last_stat_; }

  // openat2(root, path, flags) confined to the root; `path` need not be clean (a hardlink
  // target's raw parent). No creation.
  absl::StatusOr<ScopedFd> OpenInRoot(std::string_view path, int flags);

  // Directory syscalls (openat, mkdirat, fstat(at), readlinkat) this SafeRoot's Dir() calls
  // have made: the work the bounds above limit.
  uint64_t lookups() const { return lookups_; }

 private:
  // One directory of the chain: chain_[i + 1] is the entry `name` of chain_[i] (chain_[0]
  // of the root), a real directory, never a symlink.
  struct Level {
    std::string name;
    ScopedFd fd;          // invalid while closed to stay within kMaxChainFds
    struct stat st = {};  // identity, and what dir_stat() reports
    size_t path_len = 0;  // length of "name0/name1/.../name" up to this level
  };

  explicit SafeRoot(ScopedFd root) : root_(std::move(root)) {}
  // Walks `dir` from the root along (and past) the chain; returns the depth it ends at.
  absl::StatusOr<size_t> Resolve(std::string_view dir, bool create);
  // Opens `comp` below chain level `depth - 1` (the root for 0), creating it if `create`;
  // pushes it. Returns false (and sets *link_target) if it is a symlink.
  absl::StatusOr<bool> Descend(std::string_view dir, size_t depth, const std::string& comp,
                               bool create, std::string* link_target);
  // The fd of chain_[k], reopening it (and closing far levels) if needed.
  absl::StatusOr<int> FdAt(size_t k);
  absl::Status Reopen(size_t k, int from_fd, const char* name);
  void Truncate(size_t depth);
  void TrimFds(size_t keep);
  void CountLookup();

  ScopedFd root_;
  struct stat root_stat_ = {};
  std::vector<Level> chain_;
  size_t open_lo_ = 0, open_hi_ = 0;  // chain_[open_lo_, open_hi_) hold open fds
  std::string cached_path_;           // what the last successful Dir() resolved
  bool cached_ = false;
  std::vector<std::string> pending_;  // components still to walk, last one first
  std::string link_;                  // scratch for readlinkat
  struct stat last_stat_ = {};
  uint64_t lookups_ = 0;
};

// lookups() summed over every SafeRoot of the process (a work counter for tests of the
// extractor, which owns its SafeRoot).
uint64_t SafeRootLookups();

// Removes `name` in `dirfd` and, if it is a directory, everything below it (os.RemoveAll),
// never following symlinks. A missing name is not an error. Iterative, with a bounded number
// of descriptors whatever the depth (overlay/tree_walk.h RemoveTreeAt).
absl::Status RemoveAllAt(int dirfd, const char* name);

}  // namespace zsnap::unpack
