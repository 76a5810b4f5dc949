#include "unpack/file_source.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace zsnap::unpack {
namespace {

absl::Status PosixError(absl::string_view op, absl::string_view path, int err) {
  std::string msg = absl::StrCat(op, " ", path, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    case EISDIR:
    case ENOTDIR:
      return absl::FailedPreconditionError(msg);
    default:
      return absl::InternalError(msg);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<FileSource>> FileSource::Open(const std::string& path) {
  if (path == "-") return FromFd(STDIN_FILENO, "stdin");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return PosixError("open", path, errno);
  // Layers are read once front to back: ask for aggressive readahead.
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  return std::unique_ptr<FileSource>(new FileSource(fd, /*owned=*/true, path));
}

std::unique_ptr<FileSource> FileSource::FromFd(int fd, std::string name) {
  return std::unique_ptr<FileSource>(new FileSource(fd, /*owned=*/false, std::move(name)));
}

FileSource::~FileSource() {
  if (owned_) ::close(fd_);
}

absl::StatusOr<size_t> FileSource::Read(std::span<std::byte> buf) {
  while (true) {
    ssize_t n = ::read(fd_, buf.data(), buf.size());
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) return PosixError("read", name_, errno);
  }
}

}  // namespace zsnap::unpack
