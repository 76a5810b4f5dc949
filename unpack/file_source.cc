#include "unpack/file_source.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "absl/status/status.h"
#include "overlay/status_util.h"

namespace zsnap::unpack {
using overlay::ErrnoStatus;

absl::StatusOr<std::unique_ptr<FileSource>> FileSource::Open(const std::string& path) {
  if (path == "-") return FromFd(STDIN_FILENO, "stdin");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open", path, errno);
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
    if (errno != EINTR) return ErrnoStatus("read", name_, errno);
  }
}

}  // namespace zsnap::unpack
