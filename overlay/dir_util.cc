#include "overlay/dir_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "overlay/status_util.h"

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

absl::Status RemoveEntry(int parent_fd, const std::string& name, const std::string& path) {
  if (unlinkat(parent_fd, name.c_str(), 0) == 0 || errno == ENOENT) return absl::OkStatus();
  if (errno != EISDIR) return ErrnoStatus("unlink", path, errno);

  {
    DirHandle dir(parent_fd, name.c_str());
    if (!dir.ok()) {
      if (dir.error() == ENOENT) return absl::OkStatus();
      return ErrnoStatus("open", path, dir.error());
    }
    absl::StatusOr<std::vector<std::string>> names = dir.Names(path);
    if (!names.ok()) return names.status();
    for (const std::string& child : *names) {
      if (absl::Status s = RemoveEntry(dir.fd(), child, absl::StrCat(path, "/", child)); !s.ok()) {
        return s;
      }
    }
  }
  if (unlinkat(parent_fd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return ErrnoStatus("rmdir", path, errno);
  }
  return absl::OkStatus();
}

struct InodeKey {
  dev_t dev;
  ino_t ino;
  friend bool operator==(const InodeKey&, const InodeKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const InodeKey& k) {
    return H::combine(std::move(h), k.dev, k.ino);
  }
};

struct UsageWalk {
  absl::flat_hash_set<InodeKey> seen;
  int64_t size = 0;

  void Count(const struct stat& st) {
    if (seen.insert(InodeKey{st.st_dev, st.st_ino}).second) {
      size += static_cast<int64_t>(st.st_blocks) * 512;
    }
  }

  // Counts the children of the directory `name` (already counted itself) under `parent_fd`.
  absl::Status WalkDir(int parent_fd, const char* name, const std::string& path) {
    DirHandle dir(parent_fd, name);
    if (!dir.ok()) {
      if (dir.error() == ENOENT) return absl::OkStatus();
      return ErrnoStatus("open", path, dir.error());
    }
    absl::StatusOr<std::vector<std::string>> names = dir.Names(path);
    if (!names.ok()) return names.status();
    for (const std::string& child : *names) {
      struct stat st;
      const std::string child_path = absl::StrCat(path, "/", child);
      if (fstatat(dir.fd(), child.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;
        return ErrnoStatus("lstat", child_path, errno);
      }
      Count(st);
      if (S_ISDIR(st.st_mode)) {
        if (absl::Status s = WalkDir(dir.fd(), child.c_str(), child_path); !s.ok()) return s;
      }
    }
    return absl::OkStatus();
  }
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

absl::Status RemoveTree(const std::string& path) { return RemoveEntry(AT_FDCWD, path, path); }

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
  UsageWalk walk;
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return ErrnoStatus("lstat", path, errno);
  walk.Count(st);
  if (S_ISDIR(st.st_mode)) {
    if (absl::Status s = walk.WalkDir(AT_FDCWD, path.c_str(), path); !s.ok()) return s;
  }
  return Usage{.size = walk.size, .inodes = static_cast<int64_t>(walk.seen.size())};
}

}  // namespace zsnap::overlay
