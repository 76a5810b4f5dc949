#include "overlay/tree_walk.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "overlay/status_util.h"

namespace zsnap::overlay {
namespace {

constexpr int kDirFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;

// One directory on the walk's path from the top.
struct Frame {
  std::string name;    // in the directory below it on the stack (or the caller's dirfd)
  DIR* dir = nullptr;  // nullptr while closed to stay within the descriptor budget
  long resume = 0;     // telldir() position to continue at once reopened
  dev_t dev = 0;       // identity, to check a reopen through ".." lands on the same directory
  ino_t ino = 0;
  bool removed = false;  // removal: this pass over the directory removed an entry
};

// The stack of directories from the top of the walk to where it is. Open frames are always
// the deepest ones (a contiguous suffix starting at first_open_), so the top is always open.
class DirStack {
 public:
  explicit DirStack(int base_fd) : base_fd_(base_fd) {}
  ~DirStack() {
    for (Frame& f : frames_) {
      if (f.dir != nullptr) closedir(f.dir);
    }
  }
  DirStack(const DirStack&) = delete;
  DirStack& operator=(const DirStack&) = delete;

  bool empty() const { return frames_.empty(); }
  Frame& top() { return frames_.back(); }
  int top_fd() { return dirfd(frames_.back().dir); }
  // The directory holding the top frame's entry, once the top has been popped.
  int fd_after_pop() { return frames_.empty() ? base_fd_ : top_fd(); }

  // Opens directory `name` in the top frame (the base fd when empty) and pushes it. Returns
  // 0 or the errno of the open; ENOTDIR/ELOOP mean `name` is no longer a directory.
  int Push(const char* name) {
    const int parent = frames_.empty() ? base_fd_ : top_fd();
    const int fd = openat(parent, name, kDirFlags);
    if (fd < 0) return errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
      const int err = errno;
      close(fd);
      return err;
    }
    DIR* dir = fdopendir(fd);
    if (dir == nullptr) {
      const int err = errno;
      close(fd);
      return err;
    }
    if (static_cast<int>(frames_.size() - first_open_) == kTreeWalkMaxOpenDirs) {
      Frame& oldest = frames_[first_open_++];
      oldest.resume = telldir(oldest.dir);
      closedir(oldest.dir);
      oldest.dir = nullptr;
    }
    frames_.push_back(Frame{.name = name, .dir = dir, .dev = st.st_dev, .ino = st.st_ino});
    return 0;
  }

  // Pops the top frame into `popped` (its directory closed). The frame below becomes the top;
  // if the budget had closed it, it is reopened as ".." of the popped one and must be the
  // directory it was, else the tree moved under the walk: Aborted.
  absl::Status Pop(Frame& popped) {
    popped = std::move(frames_.back());
    frames_.pop_back();
    absl::Status status = absl::OkStatus();
    if (!frames_.empty() && frames_.back().dir == nullptr) status = Reopen(popped);
    closedir(popped.dir);
    popped.dir = nullptr;
    return status;
  }

  // `leaf` in the top frame, for messages: the top of the walk, the last directory and the
  // depth (a full 40,000-level path would be megabytes).
  std::string Where(absl::string_view leaf) const {
    if (frames_.empty()) return std::string(leaf);
    if (frames_.size() == 1) return absl::StrCat(frames_[0].name, "/", leaf);
    return absl::StrCat(frames_[0].name, "/…/", frames_.back().name, "/", leaf, " (depth ",
                        frames_.size(), ")");
  }

 private:
  absl::Status Reopen(const Frame& child) {
    Frame& f = frames_.back();
    const std::string where = Where("..");
    const int fd = openat(dirfd(child.dir), "..", kDirFlags);
    if (fd < 0) return ErrnoStatus("reopen", where, errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
      const int err = errno;
      close(fd);
      return ErrnoStatus("stat", where, err);
    }
    if (st.st_dev != f.dev || st.st_ino != f.ino) {
      close(fd);
      return absl::AbortedError(
          absl::StrCat("directory ", where, " was moved during the walk; try again"));
    }
    f.dir = fdopendir(fd);
    if (f.dir == nullptr) {
      const int err = errno;
      close(fd);
      return ErrnoStatus("fdopendir", where, err);
    }
    seekdir(f.dir, f.resume);
    first_open_ = frames_.size() - 1;
    return absl::OkStatus();
  }

  const int base_fd_;
  std::vector<Frame> frames_;
  size_t first_open_ = 0;
};

bool IsDot(const char* name) {
  return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

// The next entry of the top directory other than "." and "..", or nullptr at its end
// (`err` set if readdir failed).
const dirent* NextEntry(DirStack& stack, int& err) {
  for (;;) {
    errno = 0;
    const dirent* e = readdir(stack.top().dir);
    if (e == nullptr) {
      err = errno;
      return nullptr;
    }
    if (!IsDot(e->d_name)) return e;
  }
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

class UsageCounter {
 public:
  void Count(const struct stat& st) {
    // Only an inode with more links can be met again (directories cannot be hard-linked), so
    // only those are remembered: memory follows the hard links, not the tree.
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1 &&
        !linked_.insert(InodeKey{st.st_dev, st.st_ino}).second) {
      return;
    }
    usage_.size += static_cast<int64_t>(st.st_blocks) * 512;
    ++usage_.inodes;
  }
  const Usage& usage() const { return usage_; }

 private:
  absl::flat_hash_set<InodeKey> linked_;
  Usage usage_;
};

}  // namespace

absl::Status RemoveTreeAt(int dirfd, const char* name) {
  if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT) return absl::OkStatus();
  if (errno != EISDIR) return ErrnoStatus("unlink", name, errno);
  DirStack stack(dirfd);
  if (const int err = stack.Push(name); err != 0) {
    return err == ENOENT ? absl::OkStatus() : ErrnoStatus("open", name, err);
  }
  // Unlinking while readdir() goes on may make it skip entries on some file systems (Go's
  // removeall_at.go reopens for that reason): at the end of a pass the directory is removed,
  // and if it is not empty yet, passed over again as long as each pass removes something.
  while (!stack.empty()) {
    int err = 0;
    const dirent* e = NextEntry(stack, err);
    if (e != nullptr) {
      const char* child = e->d_name;
      if (unlinkat(stack.top_fd(), child, 0) == 0) {
        stack.top().removed = true;
        continue;
      }
      if (errno == ENOENT) continue;
      if (errno != EISDIR) return ErrnoStatus("unlink", stack.Where(child), errno);
      if (err = stack.Push(child); err != 0 && err != ENOENT) {
        return ErrnoStatus("open", stack.Where(child), err);
      }
      continue;
    }
    if (err != 0) return ErrnoStatus("readdir", stack.Where(""), err);
    Frame done;
    if (absl::Status s = stack.Pop(done); !s.ok()) return s;
    const int parent = stack.fd_after_pop();
    if (unlinkat(parent, done.name.c_str(), AT_REMOVEDIR) == 0 || errno == ENOENT) {
      if (!stack.empty()) stack.top().removed = true;
      continue;
    }
    const int rmdir_err = errno;
    if ((rmdir_err == ENOTEMPTY || rmdir_err == EEXIST) && done.removed) {
      err = stack.Push(done.name.c_str());  // another pass, from the start
      if (err == 0 || err == ENOENT) continue;
      return ErrnoStatus("open", stack.Where(done.name), err);
    }
    return ErrnoStatus("rmdir", stack.Where(done.name), rmdir_err);
  }
  return absl::OkStatus();
}

absl::StatusOr<Usage> DiskUsageAt(int dirfd, const char* name) {
  UsageCounter counter;
  struct stat st;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return ErrnoStatus("lstat", name, errno);
  }
  counter.Count(st);
  if (!S_ISDIR(st.st_mode)) return counter.usage();
  DirStack stack(dirfd);
  if (const int err = stack.Push(name); err != 0) {
    if (err == ENOENT || err == ENOTDIR || err == ELOOP) return counter.usage();  // replaced
    return ErrnoStatus("open", name, err);
  }
  while (!stack.empty()) {
    int err = 0;
    const dirent* e = NextEntry(stack, err);
    if (e == nullptr) {
      if (err != 0) return ErrnoStatus("readdir", stack.Where(""), err);
      Frame done;
      if (absl::Status s = stack.Pop(done); !s.ok()) return s;
      continue;
    }
    const char* child = e->d_name;
    if (fstatat(stack.top_fd(), child, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      return ErrnoStatus("lstat", stack.Where(child), errno);
    }
    counter.Count(st);
    if (!S_ISDIR(st.st_mode)) continue;
    err = stack.Push(child);
    // Vanished or replaced by a non-directory since the lstat: counted as it was.
    if (err != 0 && err != ENOENT && err != ENOTDIR && err != ELOOP) {
      return ErrnoStatus("open", stack.Where(child), err);
    }
  }
  return counter.usage();
}

}  // namespace zsnap::overlay
