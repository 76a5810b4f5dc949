// The extractor's syscalls for one entry: creating it in its (already confined) parent
// directory with containerd's replace rule, and applying its metadata in containerd's order.
//
// Replace rule (archive.applyNaive): an existing name is removed (recursively for a
// directory) before the new entry is created, except that an existing directory is kept and
// merged when the new entry is a directory too. Names are never followed: every call takes a
// parent directory fd and a single last component.
//
// Metadata order (archive.createTarFile): lchown, then xattrs, then chmod (chown may clear
// setuid/setgid and drops security.capability, so it goes first), then atime/mtime with
// nanoseconds. For regular files this must run after the data is written: a write drops
// security.capability and moves mtime.
//
// Stateless functions; thread-safe for distinct entries.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "unpack/safe_path.h"

namespace zsnap::unpack {

struct EntryMeta {
  uid_t uid = 0;
  gid_t gid = 0;
  mode_t perm = 0;          // permission bits incl. setuid, setgid, sticky (07777)
  struct timespec times[2]  // atime, mtime as utimensat takes them
      = {};
  std::vector<std::pair<std::string, std::string>> xattrs;  // name, value
  // Steps the caller proved redundant for a new entry (see tar_extractor.cc CreatePolicy):
  // the kernel already gave it this owner / these permission bits. Times are skipped for a
  // directory at creation because they are set again after its children.
  bool do_chown = true;
  bool do_chmod = true;
  bool do_times = true;

  // Sets `times` the way containerd does: atime = max(atime, mtime); a time before the epoch
  // or past what int64 nanoseconds hold becomes the epoch (archive.boundTime).
  void SetTimes(bool has_atime, int64_t atime_s, long atime_ns, int64_t mtime_s, long mtime_ns);
};

// chown, xattrs, chmod, times on an open regular file or directory.
absl::Status ApplyMetaFd(int fd, const EntryMeta& meta);

// The same for `name` in `dirfd` without opening it: directories, symlinks (no chmod,
// lchown/lutimes), devices, fifos and hard links. `type` is the S_IFMT bits of what `name` is,
// or 0 when unknown (a hard link, whose target may be a symlink): then it is looked up.
absl::Status ApplyMetaAt(int dirfd, const char* name, const EntryMeta& meta, mode_t type);

// Creates an empty regular file with permission bits `mode` and opens it for writing.
absl::StatusOr<ScopedFd> CreateFile(int dirfd, const char* name, mode_t mode);

// Creates a directory with `mode`, or keeps an existing one (merge). True if created.
absl::StatusOr<bool> MakeDir(int dirfd, const char* name, mode_t mode);

absl::Status MakeSymlink(int dirfd, const char* name, const char* target);

// mknod for character/block devices and fifos; `mode` includes the file type.
absl::Status MakeNode(int dirfd, const char* name, mode_t mode, dev_t dev);

// Hard link `name` in `dirfd` to `target_name` in `target_dirfd`; a symlink target is linked
// itself, not followed (as os.Link / linkat without AT_SYMLINK_FOLLOW).
absl::Status MakeHardlink(int target_dirfd, const char* target_name, int dirfd, const char* name);

// Writes all of `data` at `offset`, retrying short writes and EINTR.
absl::Status WriteAll(int fd, const void* data, size_t size, uint64_t offset);

}  // namespace zsnap::unpack
