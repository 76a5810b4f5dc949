#include "unpack/safe_path.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "overlay/tree_walk.h"
#include "unpack/posix_status.h"

namespace zsnap::unpack {
namespace {

constexpr int kDirFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;

// Go's filepath.Clean: "", "." and "x/.." disappear. A ".." that has nothing left to pop
// stays when `keep_leading_dotdot` (a relative link target: it climbs from the directory
// holding the link) and is dropped otherwise (at the root ".." is the root).
void CleanPath(std::string_view name, bool keep_leading_dotdot, std::string& out) {
  out.clear();
  size_t ups = 0;  // leading ".." components kept in `out` ("../.." is 3 * ups - 1 bytes)
  size_t i = 0;
  while (i < name.size()) {
    size_t j = name.find('/', i);
    if (j == std::string_view::npos) j = name.size();
    std::string_view comp = name.substr(i, j - i);
    i = j + 1;
    if (comp.empty() || comp == ".") continue;
    if (comp == "..") {
      if (out.size() > ups * 3) {  // a component to pop
        size_t slash = out.rfind('/');
        out.resize(slash == std::string::npos ? 0 : slash);
        continue;
      }
      if (!keep_leading_dotdot) continue;
      ++ups;
    }
    if (!out.empty()) out.push_back('/');
    out.append(comp);
  }
}

// A symlink target as RootPath joins it: an absolute one from the root, a relative one
// keeping its leading "..".
void CleanLinkTarget(std::string_view target, std::string& out) {
  CleanPath(target, /*keep_leading_dotdot=*/!target.starts_with('/'), out);
}

int Openat2(int dirfd, const char* path, int flags) {
  struct open_how how = {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  for (int attempt = 0;; ++attempt) {
    long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
    // EAGAIN: a concurrent rename made the kernel refuse to vouch for `..`; retry.
    if (fd >= 0 || errno != EAGAIN || attempt == 16) return static_cast<int>(fd);
  }
}

std::atomic<uint64_t> g_lookups{0};

}  // namespace

uint64_t SafeRootLookups() { return g_lookups.load(std::memory_order_relaxed); }

void SafeRoot::CountLookup() {
  ++lookups_;
  g_lookups.fetch_add(1, std::memory_order_relaxed);
}

void ScopedFd::Reset(int fd) {
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
}

void CleanEntryPath(std::string_view name, std::string& out) {
  CleanPath(name, /*keep_leading_dotdot=*/false, out);
}

std::pair<std::string_view, std::string_view> SplitParent(std::string_view clean) {
  size_t slash = clean.rfind('/');
  if (slash == std::string_view::npos) return {std::string_view(), clean};
  return {clean.substr(0, slash), clean.substr(slash + 1)};
}

absl::StatusOr<SafeRoot> SafeRoot::Open(const std::string& dest) {
  int fd = open(dest.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return SyscallError(absl::StrCat("open destination ", dest), errno);
  // Probe openat2 once so an old kernel fails clearly instead of on the first entry.
  int probe = Openat2(fd, ".", O_PATH | O_DIRECTORY);
  if (probe < 0) {
    int err = errno;
    close(fd);
    return SyscallError("openat2 (needs Linux >= 5.6)", err);
  }
  close(probe);
  SafeRoot root{ScopedFd(fd)};
  if (fstat(fd, &root.root_stat_) != 0) return SyscallError("stat destination", errno);
  return root;
}

absl::StatusOr<int> SafeRoot::Dir(std::string_view dir, bool create) {
  if (cached_ && dir == cached_path_) {
    last_stat_ = chain_.empty() ? root_stat_ : chain_.back().st;
    return chain_.empty() ? root_.get() : chain_.back().fd.get();
  }
  cached_ = false;
  absl::StatusOr<size_t> depth = Resolve(dir, create);
  absl::StatusOr<int> fd = root_.get();
  if (depth.ok() && *depth > 0) fd = FdAt(*depth - 1);
  if (!depth.ok() || !fd.ok()) {
    Truncate(0);
    return depth.ok() ? fd.status() : depth.status();
  }
  // Only the returned directory and its ancestors stay: what the entries in it may change
  // (its children) is never cached.
  Truncate(*depth);
  cached_path_.assign(dir);
  cached_ = true;
  last_stat_ = *depth == 0 ? root_stat_ : chain_[*depth - 1].st;
  return fd;
}

void SafeRoot::Forget(std::string_view dir) {
  std::string_view cached(cached_path_);
  if (!cached_ || !cached.starts_with(dir)) return;
  if (cached.size() == dir.size() || dir.empty() || cached[dir.size()] == '/') {
    cached_ = false;
    Truncate(0);
  }
}

absl::StatusOr<size_t> SafeRoot::Resolve(std::string_view dir, bool create) {
  if (dir.size() >= PATH_MAX) {
    return SyscallError(absl::StrCat("resolve \"", ToAbsl(dir.substr(0, 64)), "...\""),
                        ENAMETOOLONG);
  }
  pending_.clear();
  auto push_reversed = [this](std::string_view path) {
    // `path` is clean except for leading ".." (a relative link target).
    size_t end = path.size();
    while (end > 0) {
      size_t slash = path.rfind('/', end - 1);
      size_t begin = slash == std::string_view::npos ? 0 : slash + 1;
      if (end > begin) pending_.emplace_back(path.substr(begin, end - begin));
      if (slash == std::string_view::npos) break;
      end = slash;
    }
  };
  push_reversed(dir);
  size_t depth = 0;
  int links = 0;
  int steps = 0;
  std::string comp;
  std::string cleaned;
  while (!pending_.empty()) {
    comp = std::move(pending_.back());
    pending_.pop_back();
    if (++steps > kMaxResolveSteps) {
      return absl::ResourceExhaustedError(absl::StrCat("resolve \"", ToAbsl(dir), "\": more than ",
                                                       kMaxResolveSteps,
                                                       " path components to walk (symlinks)"));
    }
    if (comp == "..") {  // only from a link target; the root is its own parent
      if (depth > 0) --depth;
      continue;
    }
    if (depth < chain_.size() && chain_[depth].name == comp) {
      ++depth;  // on the chain: no syscall
      continue;
    }
    absl::StatusOr<bool> descended = Descend(dir, depth, comp, create, &link_);
    if (!descended.ok()) return descended.status();
    if (*descended) {
      ++depth;
      continue;
    }
    if (++links > kMaxLinks) {
      return SyscallError(absl::StrCat("resolve \"", ToAbsl(dir), "\""), ELOOP);
    }
    // RootPath: the target joined lexically to the directory holding the link (Go's
    // filepath.Join cleans, so "x/../y" is "y" without looking at x), absolute ones to the
    // root; then the rest of the path.
    if (link_.starts_with('/')) depth = 0;
    CleanLinkTarget(link_, cleaned);
    push_reversed(cleaned);
  }
  return depth;
}

absl::StatusOr<bool> SafeRoot::Descend(std::string_view dir, size_t depth, const std::string& comp,
                                       bool create, std::string* link_target) {
  absl::StatusOr<int> parent = depth == 0 ? root_.get() : FdAt(depth - 1);
  if (!parent.ok()) return parent.status();
  auto error = [&](std::string_view op, int err) {
    return SyscallError(
        absl::StrCat(ToAbsl(op), " \"", ToAbsl(comp), "\" resolving \"", ToAbsl(dir), "\""), err);
  };
  const size_t path_len = (depth == 0 ? 0 : chain_[depth - 1].path_len + 1) + comp.size();
  if (path_len >= PATH_MAX) return error("resolve", ENAMETOOLONG);
  CountLookup();
  int fd = openat(*parent, comp.c_str(), kDirFlags);
  if (fd < 0 && errno == ENOENT) {
    if (!create) return error("resolve", ENOENT);
    Truncate(depth);  // the old chain went elsewhere from here
    CountLookup();
    if (mkdirat(*parent, comp.c_str(), 0755) != 0) return error("mkdir", errno);
    CountLookup();
    fd = openat(*parent, comp.c_str(), kDirFlags);
    if (fd < 0) return error("open new directory", errno);
    CountLookup();
    if (fchmod(fd, 0755) != 0) {  // 0755 whatever the umask, as containerd
      int err = errno;
      close(fd);
      return error("chmod new directory", err);
    }
  }
  if (fd < 0) {
    const int err = errno;
    if (err != ENOTDIR && err != ELOOP) return error("resolve", err);
    struct stat st;
    CountLookup();
    if (fstatat(*parent, comp.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return error("lstat", errno);
    }
    if (!S_ISLNK(st.st_mode)) return error("resolve", ENOTDIR);
    link_target->resize(PATH_MAX);
    CountLookup();
    ssize_t n = readlinkat(*parent, comp.c_str(), link_target->data(), link_target->size());
    if (n < 0) return error("readlink", errno);
    if (static_cast<size_t>(n) >= link_target->size()) return error("readlink", ENAMETOOLONG);
    link_target->resize(static_cast<size_t>(n));
    return false;
  }
  // A symlink leaves the chain as it is: its target may well walk back along it.
  Truncate(depth);
  Level level{.name = comp, .fd = ScopedFd(fd), .path_len = path_len};
  CountLookup();
  if (fstat(fd, &level.st) != 0) return error("stat", errno);
  chain_.push_back(std::move(level));
  open_hi_ = chain_.size();
  if (open_lo_ > depth) open_lo_ = depth;  // the parent was open (FdAt), so contiguous
  TrimFds(depth);
  return true;
}

absl::StatusOr<int> SafeRoot::FdAt(size_t k) {
  if (k >= open_lo_ && k < open_hi_) return chain_[k].fd.get();
  // Walk from the open range, or down from the root, whichever opens fewer directories:
  // either way the cost is at most the components the caller walked since it last needed
  // a descriptor.
  size_t from_range = SIZE_MAX;
  if (open_hi_ > open_lo_) from_range = k < open_lo_ ? open_lo_ - k : k + 1 - open_hi_;
  if (k + 1 <= from_range) {
    for (size_t j = open_lo_; j < open_hi_; ++j) chain_[j].fd.Reset();
    open_lo_ = open_hi_ = 0;
    for (size_t j = 0; j <= k; ++j) {
      int from = j == 0 ? root_.get() : chain_[j - 1].fd.get();
      if (absl::Status s = Reopen(j, from, chain_[j].name.c_str()); !s.ok()) return s;
      open_hi_ = j + 1;
      TrimFds(j);
    }
  } else if (k < open_lo_) {
    for (size_t j = open_lo_; j-- > k;) {
      if (absl::Status s = Reopen(j, chain_[j + 1].fd.get(), ".."); !s.ok()) return s;
      open_lo_ = j;
      TrimFds(j);
    }
  } else {
    for (size_t j = open_hi_; j <= k; ++j) {
      if (absl::Status s = Reopen(j, chain_[j - 1].fd.get(), chain_[j].name.c_str()); !s.ok()) {
        return s;
      }
      open_hi_ = j + 1;
      TrimFds(j);
    }
  }
  return chain_[k].fd.get();
}

absl::Status SafeRoot::Reopen(size_t k, int from_fd, const char* name) {
  CountLookup();
  int fd = openat(from_fd, name, kDirFlags);
  if (fd < 0) {
    return SyscallError(absl::StrCat("reopen \"", chain_[k].name, "\" (depth ", k + 1, ")"), errno);
  }
  struct stat st;
  CountLookup();
  if (fstat(fd, &st) != 0 || st.st_dev != chain_[k].st.st_dev || st.st_ino != chain_[k].st.st_ino) {
    close(fd);
    return absl::AbortedError(absl::StrCat("directory \"", chain_[k].name, "\" (depth ", k + 1,
                                           ") was moved or replaced during extraction"));
  }
  chain_[k].fd.Reset(fd);
  chain_[k].st = st;
  return absl::OkStatus();
}

void SafeRoot::Truncate(size_t depth) {
  if (chain_.size() > depth) chain_.resize(depth);
  open_hi_ = std::min(open_hi_, chain_.size());
  open_lo_ = std::min(open_lo_, open_hi_);
}

// Closes the open levels farthest from `keep` until at most kMaxChainFds are open.
void SafeRoot::TrimFds(size_t keep) {
  while (open_hi_ - open_lo_ > kMaxChainFds) {
    if (keep - open_lo_ >= open_hi_ - 1 - keep) {
      chain_[open_lo_++].fd.Reset();
    } else {
      chain_[--open_hi_].fd.Reset();
    }
  }
}

absl::StatusOr<ScopedFd> SafeRoot::OpenInRoot(std::string_view path, int flags) {
  std::string p(path.empty() ? std::string_view(".") : path);
  int fd = Openat2(root_.get(), p.c_str(), flags);
  if (fd < 0) return SyscallError(absl::StrCat("resolve \"", ToAbsl(path), "\""), errno);
  return ScopedFd(fd);
}

absl::Status RemoveAllAt(int dirfd, const char* name) {
  // One iterative walk with a bounded descriptor budget for the whole project: a layer (or,
  // through overlay, a container) can nest directories far deeper than a stack or the
  // descriptor limit allows.
  return overlay::RemoveTreeAt(dirfd, name);
}

}  // namespace zsnap::unpack
