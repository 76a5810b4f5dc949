#include "unpack/entry_writer.h"

#include <fcntl.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "unpack/posix_status.h"

namespace zsnap::unpack {
namespace {

// int64 nanoseconds since the epoch end here (Go's maxTime on 64-bit).
constexpr int64_t kMaxSec = 9223372036;
constexpr long kMaxSecNs = 854775807;

struct timespec Bound(int64_t s, long ns) {
  if (s < 0 || s > kMaxSec || (s == kMaxSec && ns > kMaxSecNs)) return {0, 0};
  return {static_cast<time_t>(s), ns};
}

bool Later(int64_t as, long ans, int64_t bs, long bns) {
  return as > bs || (as == bs && ans > bns);
}

// containerd refuses admin attributes from an archive (tar_unix.go setxattr: ENOTSUP, which
// applyNaive then ignores). For us this also keeps a layer from forging overlay metadata.
bool Refused(const std::string& key) { return key.starts_with("trusted."); }

// The errors containerd logs and ignores: ENOTSUP anywhere, EPERM for user.* on anything but
// regular files and directories (the kernel allows user.* only there).
bool Ignored(int err, const std::string& key, mode_t type) {
  if (err == ENOTSUP) return true;
  return err == EPERM && key.starts_with("user.") && !S_ISREG(type) && !S_ISDIR(type);
}

// Retries `create` after removing what is in the way (the replace rule).
template <typename Create>
absl::Status CreateReplacing(int dirfd, const char* name, std::string_view op, Create create) {
  if (create() == 0) return absl::OkStatus();
  if (errno != EEXIST) return SyscallError(op, errno);
  if (absl::Status s = RemoveAllAt(dirfd, name); !s.ok()) return s;
  if (create() == 0) return absl::OkStatus();
  return SyscallError(op, errno);
}

}  // namespace

void EntryMeta::SetTimes(bool has_atime, int64_t atime_s, long atime_ns, int64_t mtime_s,
                         long mtime_ns) {
  if (!has_atime || !Later(atime_s, atime_ns, mtime_s, mtime_ns)) {
    atime_s = mtime_s;
    atime_ns = mtime_ns;
  }
  times[0] = Bound(atime_s, atime_ns);
  times[1] = Bound(mtime_s, mtime_ns);
}

absl::Status ApplyMetaFd(int fd, const EntryMeta& meta) {
  if (meta.do_chown && fchown(fd, meta.uid, meta.gid) != 0) {
    return SyscallError(absl::StrCat("chown ", meta.uid, ":", meta.gid), errno);
  }
  for (const auto& [key, value] : meta.xattrs) {
    if (Refused(key)) continue;
    if (fsetxattr(fd, key.c_str(), value.data(), value.size(), 0) != 0) {
      // Only regular files and directories get here, where user.* is allowed.
      if (errno == ENOTSUP) continue;
      return SyscallError(absl::StrCat("setxattr ", key), errno);
    }
  }
  if (meta.do_chmod && fchmod(fd, meta.perm) != 0) return SyscallError("chmod", errno);
  if (meta.do_times && futimens(fd, meta.times) != 0) return SyscallError("utimes", errno);
  return absl::OkStatus();
}

absl::Status ApplyMetaAt(int dirfd, const char* name, const EntryMeta& meta, mode_t type) {
  if (meta.do_chown && fchownat(dirfd, name, meta.uid, meta.gid, AT_SYMLINK_NOFOLLOW) != 0) {
    return SyscallError(absl::StrCat("lchown ", meta.uid, ":", meta.gid), errno);
  }
  struct stat st;
  st.st_mode = type;
  if (type == 0 && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return SyscallError("lstat", errno);
  }
  if (!meta.xattrs.empty()) {
    // No fd to use (opening a device node could have side effects, a symlink cannot be
    // opened): lsetxattr through the parent's /proc fd link, last component not followed.
    char path[64 + NAME_MAX];
    std::snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", dirfd, name);
    for (const auto& [key, value] : meta.xattrs) {
      if (Refused(key)) continue;
      if (lsetxattr(path, key.c_str(), value.data(), value.size(), 0) != 0 &&
          !Ignored(errno, key, st.st_mode)) {
        return SyscallError(absl::StrCat("lsetxattr ", key), errno);
      }
    }
  }
  // lchmod: symlinks have no mode of their own; anything else is not a symlink, so the
  // following fchmodat cannot leave the parent.
  if (meta.do_chmod && !S_ISLNK(st.st_mode) && fchmodat(dirfd, name, meta.perm, 0) != 0) {
    return SyscallError("chmod", errno);
  }
  if (meta.do_times && utimensat(dirfd, name, meta.times, AT_SYMLINK_NOFOLLOW) != 0) {
    return SyscallError("utimes", errno);
  }
  return absl::OkStatus();
}

absl::StatusOr<ScopedFd> CreateFile(int dirfd, const char* name, mode_t mode) {
  int fd = -1;
  absl::Status s = CreateReplacing(dirfd, name, "create", [&] {
    fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    return fd < 0 ? -1 : 0;
  });
  if (!s.ok()) return s;
  return ScopedFd(fd);
}

absl::StatusOr<bool> MakeDir(int dirfd, const char* name, mode_t mode) {
  if (mkdirat(dirfd, name, mode) == 0) return true;
  if (errno != EEXIST) return SyscallError("mkdir", errno);
  struct stat st;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return SyscallError("lstat", errno);
  if (S_ISDIR(st.st_mode)) return false;  // merge
  if (absl::Status s = RemoveAllAt(dirfd, name); !s.ok()) return s;
  if (mkdirat(dirfd, name, mode) != 0) return SyscallError("mkdir", errno);
  return true;
}

absl::Status MakeSymlink(int dirfd, const char* name, const char* target) {
  return CreateReplacing(dirfd, name, "symlink", [&] { return symlinkat(target, dirfd, name); });
}

absl::Status MakeNode(int dirfd, const char* name, mode_t mode, dev_t dev) {
  return CreateReplacing(dirfd, name, "mknod", [&] { return mknodat(dirfd, name, mode, dev); });
}

absl::Status MakeHardlink(int target_dirfd, const char* target_name, int dirfd, const char* name) {
  return CreateReplacing(dirfd, name, "link",
                         [&] { return linkat(target_dirfd, target_name, dirfd, name, 0); });
}

absl::Status WriteAll(int fd, const void* data, size_t size, uint64_t offset) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = pwrite(fd, p, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return SyscallError("write", errno);
    }
    if (n == 0) return SyscallError("write", EIO);
    p += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace zsnap::unpack
