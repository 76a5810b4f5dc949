#include "overlay/status_util.h"

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace zsnap::overlay {
namespace {

absl::StatusCode CodeForErrno(int err) {
  switch (err) {
    case ENOENT:
      return absl::StatusCode::kNotFound;
    case EEXIST:
    case ENOTEMPTY:
      return absl::StatusCode::kAlreadyExists;
    case EACCES:
    case EPERM:
      return absl::StatusCode::kPermissionDenied;
    case ENOSPC:
    case EDQUOT:
      return absl::StatusCode::kResourceExhausted;
    case EISDIR:
    case ENOTDIR:
      return absl::StatusCode::kFailedPrecondition;
    default:
      return absl::StatusCode::kInternal;
  }
}

std::string ErrnoText(int err) {
  char buf[256];
  // GNU strerror_r returns the message (possibly a static string, not buf).
  return std::string(strerror_r(err, buf, sizeof(buf)));
}

}  // namespace

absl::Status ErrnoStatus(absl::string_view op, absl::string_view path, int err) {
  return absl::Status(CodeForErrno(err), absl::StrCat(op, " ", path, ": ", ErrnoText(err)));
}

}  // namespace zsnap::overlay
