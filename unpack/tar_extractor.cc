// ExtractTar: the loop of containerd's archive.applyNaive with OverlayConvertWhiteout, over
// libarchive headers (TarReader), confined paths (SafeRoot), per-entry syscalls
// (entry_writer.h) and regular-file data on writer threads (FileWriterPool).
//
// Ordering: every namespace operation (create, replace, link, whiteout) runs on this thread
// in tar order, so parents exist before children and replacements happen in sequence. Only
// file contents and their final metadata run on writers; they work on their own open fds,
// so a later entry that removes or replaces the path never races them. A hard link waits
// for its target's writer before applying its own metadata. Directory times are set after
// the writers have drained.
#include "unpack/tar_extractor.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "unpack/entry_writer.h"
#include "unpack/file_writer_pool.h"
#include "unpack/posix_status.h"
#include "unpack/safe_path.h"
#include "unpack/tar_reader.h"
#include "unpack/whiteout.h"

namespace zsnap::unpack {
namespace {

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// containerd skips device nodes inside a user namespace, where mknod cannot succeed
// (userns.RunningInUserNS: anything but the full identity uid map).
bool RunningInUserNamespace() {
  FILE* f = std::fopen("/proc/self/uid_map", "re");
  if (f == nullptr) return false;
  unsigned long long inside = 0, outside = 0, length = 0;
  int n = std::fscanf(f, "%llu %llu %llu", &inside, &outside, &length);
  std::fclose(f);
  return !(n == 3 && inside == 0 && outside == 0 && length == 4294967295ull);
}

// Writer threads pay when there are cores beyond the decoder's and this thread's: on two
// cores the extra copy into slabs and the hand-offs cost more than they overlap.
int WriterThreads(int requested) {
  if (requested == 1) return 0;  // inline
  if (requested > 1) return requested;
  int cpus = static_cast<int>(std::thread::hardware_concurrency());
  return cpus <= 2 ? 0 : std::min(cpus - 2, 8);
}

// The process umask, read without changing it (umask(2) would race other threads' creates).
std::optional<mode_t> ReadUmask() {
  FILE* f = std::fopen("/proc/self/status", "re");
  if (f == nullptr) return std::nullopt;
  char line[256];
  std::optional<mode_t> mask;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    unsigned m;
    if (std::sscanf(line, "Umask: %o", &m) == 1) {
      mask = static_cast<mode_t>(m);
      break;
    }
  }
  std::fclose(f);
  return mask;
}

// Which of chown/chmod a just-created entry needs: containerd always does both, but when the
// kernel already produced the entry's owner and mode they change nothing, and on a 53k-entry
// layer two syscalls per entry are a large part of the work.
struct CreatePolicy {
  uid_t euid = geteuid();
  gid_t egid = getegid();
  std::optional<mode_t> umask = ReadUmask();
  bool default_acl = false;  // a default ACL decides new modes instead of the umask

  // A new inode in `parent` belongs to euid and to egid, or to the parent's group if the
  // parent is setgid.
  bool OwnerMatches(const EntryMeta& m, const struct stat& parent) const {
    gid_t gid = (parent.st_mode & S_ISGID) != 0 ? parent.st_gid : egid;
    return m.uid == euid && m.gid == gid;
  }
  // Creating with `perm` yields exactly `perm`: no special bits (mkdir/open drop them and
  // chown would clear them), nothing the umask removes, no inherited setgid (directories),
  // no ACL (default ones change the mode at creation, xattrs may set access ones).
  bool ModeExact(const EntryMeta& m, bool dir, const struct stat& parent) const {
    if (!umask.has_value() || default_acl || !m.xattrs.empty()) return false;
    if ((m.perm & 07000) != 0 || (m.perm & *umask) != 0) return false;
    return !(dir && (parent.st_mode & S_ISGID) != 0);
  }
};

struct DirTime {
  std::string path;  // cleaned
  struct timespec times[2];
};

class Extractor {
 public:
  Extractor(ChunkSource& source, const ExtractOptions& options)
      : options_(options),
        reader_(source, options.stop),
        pool_(WriterThreads(options.writer_threads)),
        in_userns_(RunningInUserNamespace()) {}

  absl::StatusOr<ExtractStats> Run(const std::string& dest);

 private:
  absl::Status ApplyEntry(archive_entry* e);
  absl::Status ApplyFile(archive_entry* e, int dirfd, const char* base);
  absl::Status ApplyHardlink(const char* target, int dirfd, const char* base);
  absl::Status FixDirTimes();
  void ReadMeta(archive_entry* e);

  const ExtractOptions& options_;
  TarReader reader_;
  FileWriterPool pool_;
  const bool in_userns_;
  CreatePolicy policy_;
  std::optional<SafeRoot> root_;
  ExtractStats stats_;

  // Reused across entries to avoid per-entry allocation.
  std::string name_;  // the entry's name as in the archive, for messages
  std::string path_;  // cleaned
  std::string scratch_;
  EntryMeta meta_;
  std::vector<DirTime> dirs_;
};

absl::StatusOr<ExtractStats> Extractor::Run(const std::string& dest) {
  absl::StatusOr<SafeRoot> root = SafeRoot::Open(dest);
  if (!root.ok()) return root.status();
  root_.emplace(*std::move(root));
  policy_.default_acl = fgetxattr(root_->fd(), "system.posix_acl_default", nullptr, 0) > 0;

  std::chrono::steady_clock::duration apply{};
  double reader_in_apply = 0;
  for (;;) {
    if (options_.stop.stop_requested()) return absl::CancelledError("extraction cancelled");
    absl::StatusOr<bool> more = reader_.Next();
    if (!more.ok()) {
      if (stats_.entries == 0) return more.status();
      return absl::Status(more.status().code(),
                          absl::StrCat("after entry \"", name_, "\": ", more.status().message()));
    }
    if (!*more) break;
    if (++stats_.entries > options_.max_entries) {
      return absl::ResourceExhaustedError(
          absl::StrCat("layer has more than ", options_.max_entries, " entries"));
    }
    const char* name = archive_entry_pathname(reader_.entry());
    name_.assign(name != nullptr ? name : "");
    auto start = std::chrono::steady_clock::now();
    double reader_before = reader_.busy_s() + reader_.source_wait_s();
    absl::Status s = ApplyEntry(reader_.entry());
    apply += std::chrono::steady_clock::now() - start;
    reader_in_apply += reader_.busy_s() + reader_.source_wait_s() - reader_before;
    if (!s.ok()) return s;
  }
  if (absl::Status s = pool_.Finish(); !s.ok()) return s;
  auto start = std::chrono::steady_clock::now();
  if (absl::Status s = FixDirTimes(); !s.ok()) return s;
  apply += std::chrono::steady_clock::now() - start;
  if (absl::Status s = reader_.Drain(); !s.ok()) return s;

  stats_.parse = {reader_.busy_s(), reader_.source_wait_s()};
  const StageTime pool_time = pool_.time();
  stats_.write.busy_s = Seconds(apply) - reader_in_apply + pool_time.busy_s;
  stats_.write.wait_s = pool_time.wait_s;
  stats_.write.busy_s -= std::min(stats_.write.busy_s, pool_time.wait_s);
  stats_.threads = std::max(1, pool_.threads());
  return stats_;
}

void Extractor::ReadMeta(archive_entry* e) {
  meta_.uid = static_cast<uid_t>(archive_entry_uid(e));
  meta_.gid = static_cast<gid_t>(archive_entry_gid(e));
  meta_.perm = archive_entry_perm(e) & 07777;
  meta_.SetTimes(archive_entry_atime_is_set(e) != 0, archive_entry_atime(e),
                 archive_entry_atime_nsec(e), archive_entry_mtime(e), archive_entry_mtime_nsec(e));
  meta_.do_chown = meta_.do_chmod = meta_.do_times = true;
  meta_.xattrs.clear();
  if (archive_entry_xattr_reset(e) > 0) {
    const char* key;
    const void* value;
    size_t size;
    while (archive_entry_xattr_next(e, &key, &value, &size) == ARCHIVE_OK) {
      meta_.xattrs.emplace_back(key, std::string(static_cast<const char*>(value), size));
      if (meta_.xattrs.back().first == "system.posix_acl_default") policy_.default_acl = true;
    }
  }
}

absl::Status Extractor::ApplyEntry(archive_entry* e) {
  CleanEntryPath(name_, path_);
  if (path_.empty()) return absl::OkStatus();  // resolves to the root: containerd skips it
  auto [dir, base_view] = SplitParent(path_);
  const char* base = base_view.data();  // a suffix of path_, so NUL-terminated

  absl::StatusOr<int> dirfd = root_->Dir(dir, /*create=*/true);
  if (!dirfd.ok()) return EntryError(name_, dirfd.status());
  const struct stat& parent = root_->dir_stat();
  ReadMeta(e);

  std::string_view hidden;
  absl::StatusOr<WhiteoutKind> kind = ClassifyWhiteout(base_view, hidden);
  if (!kind.ok()) return EntryError(name_, kind.status());
  absl::Status s;
  if (*kind == WhiteoutKind::kOpaque) {
    s = ApplyOpaque(*dirfd, options_.userxattr);
  } else if (*kind == WhiteoutKind::kWhiteout) {
    s = ApplyWhiteout(*dirfd, hidden.data(), meta_.uid, meta_.gid);
  } else if (const char* target = archive_entry_hardlink(e); target != nullptr) {
    s = ApplyHardlink(target, *dirfd, base);
  } else {
    const mode_t type = archive_entry_filetype(e);
    switch (type) {
      case AE_IFREG:
        meta_.do_chown = !policy_.OwnerMatches(meta_, parent);
        meta_.do_chmod = !policy_.ModeExact(meta_, false, parent);
        s = ApplyFile(e, *dirfd, base);
        break;
      case AE_IFDIR: {
        absl::StatusOr<bool> created = MakeDir(*dirfd, base, meta_.perm & 0777);
        if (!created.ok()) {
          s = created.status();
          break;
        }
        // A merged directory gets all of its metadata; times come after the children.
        meta_.do_chown = !*created || !policy_.OwnerMatches(meta_, parent);
        meta_.do_chmod = !*created || !policy_.ModeExact(meta_, true, parent);
        meta_.do_times = false;
        s = ApplyMetaAt(*dirfd, base, meta_, S_IFDIR);
        root_->Forget(path_);
        if (s.ok()) dirs_.push_back(DirTime{path_, {meta_.times[0], meta_.times[1]}});
        break;
      }
      case AE_IFLNK: {
        const char* target = archive_entry_symlink(e);
        meta_.do_chown = !policy_.OwnerMatches(meta_, parent);
        s = MakeSymlink(*dirfd, base, target != nullptr ? target : "");
        if (s.ok()) s = ApplyMetaAt(*dirfd, base, meta_, S_IFLNK);
        break;
      }
      case AE_IFCHR:
      case AE_IFBLK:
      case AE_IFIFO:
        if (type != AE_IFIFO && in_userns_) break;  // as containerd's skipFile
        meta_.do_chown = !policy_.OwnerMatches(meta_, parent);
        meta_.do_chmod = !policy_.ModeExact(meta_, false, parent);
        s = MakeNode(*dirfd, base, type | (meta_.perm & 0777),
                     makedev(archive_entry_rdevmajor(e), archive_entry_rdevminor(e)));
        if (s.ok()) s = ApplyMetaAt(*dirfd, base, meta_, type);
        break;
      default:
        s = absl::InvalidArgumentError(absl::StrFormat("unsupported entry type 0%o", type));
    }
  }
  return s.ok() ? s : EntryError(name_, s);
}

absl::Status Extractor::ApplyFile(archive_entry* e, int dirfd, const char* base) {
  absl::StatusOr<ScopedFd> fd = CreateFile(dirfd, base, meta_.perm & 0777);
  if (!fd.ok()) return fd.status();
  const uint64_t size = static_cast<uint64_t>(std::max<la_int64_t>(0, archive_entry_size(e)));
  absl::StatusOr<FileWriterPool::Job*> job =
      pool_.BeginFile(*std::move(fd), name_, meta_, size, root_->dir_stat(), base);
  if (!job.ok()) return job.status();
  std::span<const std::byte> data;
  uint64_t offset = 0;
  for (;;) {
    absl::StatusOr<bool> more = reader_.ReadBlock(data, offset);
    if (!more.ok()) return more.status();
    if (!*more) break;
    stats_.file_bytes += data.size();
    if (absl::Status s = pool_.Append(*job, data, offset); !s.ok()) return s;
  }
  return pool_.EndFile(*job);
}

absl::Status Extractor::ApplyHardlink(const char* target, int dirfd, const char* base) {
  // containerd's hardlinkRootPath: the target's parent is resolved inside the root, its last
  // component is not followed (a link to a symlink links the symlink).
  std::string_view t(target);
  size_t slash = t.rfind('/');
  std::string_view tbase = slash == std::string_view::npos ? t : t.substr(slash + 1);
  if (tbase.empty() || tbase == "." || tbase == "..") {
    return absl::PermissionDeniedError(absl::StrCat("link to directory \"", ToAbsl(t), "\""));
  }
  CleanEntryPath(slash == std::string_view::npos ? std::string_view() : t.substr(0, slash),
                 scratch_);
  absl::StatusOr<ScopedFd> tdir = root_->OpenInRoot(scratch_, O_PATH | O_DIRECTORY);
  if (!tdir.ok())
    return absl::Status(tdir.status().code(),
                        absl::StrCat("link target: ", tdir.status().message()));
  const char* tname = tbase.data();  // a suffix of `target`, NUL-terminated
  struct stat st;
  if (pool_.threads() > 0 && fstat(tdir->get(), &st) == 0) pool_.WaitForEntry(st, tbase);
  if (absl::Status s = MakeHardlink(tdir->get(), tname, dirfd, base); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(s.message(), " (target \"", ToAbsl(t), "\")"));
  }
  return ApplyMetaAt(dirfd, base, meta_, /*type=*/0);
}

absl::Status Extractor::FixDirTimes() {
  for (const DirTime& d : dirs_) {
    auto [dir, base] = SplitParent(d.path);
    // A directory that a later entry of the same layer removed (e.g. replaced a parent with a
    // file) fails the layer, as containerd's applier fails its final chtimes pass on it.
    absl::StatusOr<int> dirfd = root_->Dir(dir, /*create=*/false);
    if (!dirfd.ok()) return EntryError(d.path, dirfd.status());
    if (utimensat(*dirfd, base.data(), d.times, AT_SYMLINK_NOFOLLOW) != 0) {
      return EntryError(d.path, SyscallError("utimes", errno));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ExtractStats> ExtractTar(ChunkSource& source, const std::string& dest,
                                        const ExtractOptions& options) {
  Extractor extractor(source, options);
  return extractor.Run(dest);
}

}  // namespace zsnap::unpack
