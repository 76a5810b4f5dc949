#include "unpack/safe_path.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "overlay/tree_walk.h"
#include "unpack/posix_status.h"

namespace zsnap::unpack {
namespace {

// containerd's RootPath gives up after 255 symlinks; so do we when creating parents.
constexpr int kMaxLinks = 255;

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

}  // namespace

void ScopedFd::Reset(int fd) {
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
}

void CleanEntryPath(std::string_view name, std::string& out) {
  out.clear();
  size_t i = 0;
  while (i < name.size()) {
    size_t j = name.find('/', i);
    if (j == std::string_view::npos) j = name.size();
    std::string_view comp = name.substr(i, j - i);
    i = j + 1;
    if (comp.empty() || comp == ".") continue;
    if (comp == "..") {
      // Pop the last component; at the root ".." stays at the root.
      size_t slash = out.rfind('/');
      out.resize(slash == std::string::npos ? 0 : slash);
      continue;
    }
    if (!out.empty()) out.push_back('/');
    out.append(comp);
  }
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
  if (dir.empty()) {
    last_stat_ = root_stat_;
    return root_.get();
  }
  if (cached_fd_.valid() && dir == cached_path_) {
    last_stat_ = cached_stat_;
    return cached_fd_.get();
  }
  cached_fd_.Reset();
  cached_path_.assign(dir);
  int fd = Openat2(root_.get(), cached_path_.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) {
    int err = errno;
    if (err != ENOENT || !create)
      return SyscallError(absl::StrCat("resolve \"", ToAbsl(dir), "\""), err);
    absl::StatusOr<ScopedFd> made = CreateDirs(cached_path_);
    if (!made.ok()) return made.status();
    fd = made->Release();
  }
  cached_fd_.Reset(fd);
  if (fstat(fd, &cached_stat_) != 0) {
    cached_fd_.Reset();
    return SyscallError(absl::StrCat("stat \"", ToAbsl(dir), "\""), errno);
  }
  last_stat_ = cached_stat_;
  return fd;
}

absl::StatusOr<ScopedFd> SafeRoot::CreateDirs(std::string_view dir) {
  std::string path(dir);
  std::string prefix;
  int links = 0;
  ScopedFd cur;  // the resolved prefix so far; invalid = the root
  size_t pos = 0;
  while (pos < path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string::npos) end = path.size();
    prefix.assign(path, 0, end);
    const std::string comp = path.substr(pos, end - pos);
    const int parent = cur.valid() ? cur.get() : root_.get();
    int fd = Openat2(root_.get(), prefix.c_str(), O_RDONLY | O_DIRECTORY);
    if (fd < 0 && errno != ENOENT) {
      return SyscallError(absl::StrCat("resolve \"", prefix, "\""), errno);
    }
    if (fd < 0) {
      // `comp` is missing in the resolved parent, or is a dangling symlink.
      if (mkdirat(parent, comp.c_str(), 0755) == 0) {
        fd = openat(parent, comp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fchmod(fd, 0755) != 0) {  // 0755 whatever the umask, as containerd
          int err = errno;
          if (fd >= 0) close(fd);
          return SyscallError(absl::StrCat("mkdir \"", prefix, "\""), err);
        }
      } else if (errno != EEXIST) {
        return SyscallError(absl::StrCat("mkdir \"", prefix, "\""), errno);
      } else {
        struct stat st;
        if (fstatat(parent, comp.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
          return SyscallError(absl::StrCat("lstat \"", prefix, "\""), errno);
        }
        if (!S_ISLNK(st.st_mode)) {
          return SyscallError(absl::StrCat("mkdir \"", prefix, "\""), ENOTDIR);
        }
        if (++links > kMaxLinks) {
          return SyscallError(absl::StrCat("resolve \"", ToAbsl(dir), "\""), ELOOP);
        }
        // Dangling symlink: continue at its target (inside the root) and create that.
        std::string target(PATH_MAX, '\0');
        ssize_t n = readlinkat(parent, comp.c_str(), target.data(), target.size());
        if (n < 0) return SyscallError(absl::StrCat("readlink \"", prefix, "\""), errno);
        target.resize(static_cast<size_t>(n));
        std::string next =
            target.starts_with('/') ? target : absl::StrCat(path.substr(0, pos), "/", target);
        if (end < path.size()) absl::StrAppend(&next, path.substr(end));
        CleanEntryPath(next, path);
        if (path.empty()) return SyscallError(absl::StrCat("mkdir \"", ToAbsl(dir), "\""), EEXIST);
        cur.Reset();  // start over from the root with the rewritten path
        pos = 0;
        continue;
      }
    }
    cur.Reset(fd);
    pos = end + 1;
  }
  return cur;
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
