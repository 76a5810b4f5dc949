#include "unpack/whiteout.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "unpack/posix_status.h"

namespace zsnap::unpack {

absl::StatusOr<WhiteoutKind> ClassifyWhiteout(std::string_view base, std::string_view& hidden) {
  if (!base.starts_with(kWhiteoutPrefix)) return WhiteoutKind::kNone;
  if (base == kOpaqueMarker) return WhiteoutKind::kOpaque;
  hidden = base.substr(kWhiteoutPrefix.size());
  if (hidden.empty() || hidden == "." || hidden == "..") {
    return absl::InvalidArgumentError(absl::StrCat("invalid whiteout name \"", ToAbsl(base), "\""));
  }
  return WhiteoutKind::kWhiteout;
}

absl::Status ApplyOpaque(int dirfd, bool userxattr) {
  const char* key = userxattr ? "user.overlay.opaque" : "trusted.overlay.opaque";
  if (fsetxattr(dirfd, key, "y", 1, 0) != 0) {
    return SyscallError(absl::StrCat("setxattr ", key), errno);
  }
  return absl::OkStatus();
}

absl::Status ApplyWhiteout(int dirfd, const char* name, uid_t uid, gid_t gid) {
  if (mknodat(dirfd, name, S_IFCHR, makedev(0, 0)) != 0) {
    return SyscallError(absl::StrCat("mknod whiteout \"", name, "\""), errno);
  }
  if (fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0) {
    return SyscallError(absl::StrCat("chown whiteout \"", name, "\""), errno);
  }
  return absl::OkStatus();
}

}  // namespace zsnap::unpack
