#include "plugin/file_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "overlay/status_util.h"

namespace zsnap::plugin {

absl::StatusOr<std::string> ReadBoundedFile(const std::string& path, size_t max_bytes,
                                            bool follow_symlinks) {
  const int fd =
      open(path.c_str(), O_RDONLY | O_CLOEXEC | (follow_symlinks ? 0 : O_NOFOLLOW));
  if (fd < 0) return overlay::ErrnoStatus("open", path, errno);
  std::string text;
  char buf[16384];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      close(fd);
      return overlay::ErrnoStatus("read", path, err);
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > max_bytes) {
      close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat(path, " is larger than ", max_bytes, " bytes"));
    }
  }
  close(fd);
  return text;
}

}  // namespace zsnap::plugin
