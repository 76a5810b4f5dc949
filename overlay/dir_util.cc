#include "overlay/dir_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "overlay/status_util.h"
#include "overlay/tree_walk.h"

namespace zsnap::overlay {
namespace {

// Owns a DIR* opened from a directory fd.
class DirHandle {
 public:
  DirHandle(int parent_fd, const char* name) {
    const int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      errno_ = errno;
      return;
    }
    dir_ = fdopendir(fd);
    if (dir_ == nullptr) {
      errno_ = errno;
      close(fd);
    }
  }
  ~DirHandle() {
    if (dir_ != nullptr) closedir(dir_);
  }
  DirHandle(const DirHandle&) = delete;
  DirHandle& operator=(const DirHandle&) = delete;

  bool ok() const { return dir_ != nullptr; }
  int error() const { return errno_; }
  int fd() const { return dirfd(dir_); }

  // Names of all entries except "." and "..". Reading them all before touching any keeps
  // readdir's position valid while the caller removes entries.
  absl::StatusOr<std::vector<std::string>> Names(const std::string& path) {
    std::vector<std::string> names;
    while (true) {
      errno = 0;
      const dirent* entry = readdir(dir_);
      if (entry == nullptr) {
        if (errno != 0) return ErrnoStatus("readdir", path, errno);
        return names;
      }
      const absl::string_view name = entry->d_name;
      if (name == "." || name == "..") continue;
      names.emplace_back(name);
    }
  }

 private:
  DIR* dir_ = nullptr;
  int errno_ = 0;
};

}  // namespace

absl::StatusOr<std::string> MakeTempDir(absl::string_view parent, absl::string_view prefix) {
  std::string templ = absl::StrCat(parent, "/", prefix, "XXXXXX");
  if (mkdtemp(templ.data()) == nullptr) return ErrnoStatus("mkdtemp", templ, errno);
  return templ;
}

absl::Status MakeDirWithMode(const std::string& path, mode_t mode) {
  if (mkdir(path.c_str(), mode) != 0) return ErrnoStatus("mkdir", path, errno);
  // mkdir(2) applies the umask; the layout's modes must not depend on it.
  if (chmod(path.c_str(), mode) != 0) return ErrnoStatus("chmod", path, errno);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) {
  DirHandle dir(AT_FDCWD, path.c_str());
  if (!dir.ok()) return ErrnoStatus("open", path, dir.error());
  return dir.Names(path);
}

absl::Status RemoveTree(const std::string& path) { return RemoveTreeAt(AT_FDCWD, path.c_str()); }

absl::Status FsyncDir(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open", path, errno);
  const int rc = fsync(fd);
  const int err = errno;
  close(fd);
  if (rc != 0) return ErrnoStatus("fsync", path, err);
  return absl::OkStatus();
}

absl::StatusOr<Usage> DiskUsage(const std::string& path) {
  return DiskUsageAt(AT_FDCWD, path.c_str());
}

}  // namespace zsnap::overlay
