#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "overlay/dir_util.h"
#include "overlay/filter.h"
#include "overlay/labels.h"
#include "overlay/overlay_snapshotter.h"
#include "overlay/status_util.h"
#include "spdlog/spdlog.h"

namespace zsnap::overlay {
namespace {

constexpr char kNewPrefix[] = "new-";
constexpr char kTrashPrefix[] = "rm-";

// mkdir -p with `mode` for every directory it creates.
absl::Status MakeDirs(const std::string& path, mode_t mode) {
  if (path.empty()) return absl::InvalidArgumentError("snapshotter root is empty");
  for (size_t pos = path.find('/', 1);; pos = path.find('/', pos + 1)) {
    const std::string prefix = path.substr(0, pos);
    if (mkdir(prefix.c_str(), mode) != 0 && errno != EEXIST) {
      return ErrnoStatus("mkdir", prefix, errno);
    }
    if (pos == std::string::npos) break;
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return ErrnoStatus("stat", path, errno);
  if (!S_ISDIR(st.st_mode)) return ErrnoStatus("mkdir", path, ENOTDIR);
  return absl::OkStatus();
}

// The snapshot id a directory name stands for, or 0 if it is not a canonical decimal id.
int64_t IdOfName(const std::string& name) {
  int64_t id = 0;
  if (!absl::SimpleAtoi(name, &id) || id <= 0 || absl::StrCat(id) != name) return 0;
  return id;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Snapshotter>> Snapshotter::Open(const SnapshotterOptions& options) {
  MountConfig config;
  config.index_off = OverlayHasIndexParam();
  switch (options.userxattr) {
    case SnapshotterOptions::UserXattr::kOn:
      config.userxattr = true;
      break;
    case SnapshotterOptions::UserXattr::kOff:
      config.userxattr = false;
      break;
    case SnapshotterOptions::UserXattr::kAuto:
      ZSNAP_OVERLAY_RETURN_IF_ERROR(MakeDirs(options.root, 0700));
      config.userxattr = NeedsUserxattr(options.root);
      break;
  }
  ZSNAP_OVERLAY_ASSIGN_OR_RETURN(std::unique_ptr<OverlaySnapshotter> s,
                                 OverlaySnapshotter::OpenWithConfig(options, std::move(config)));
  return std::unique_ptr<Snapshotter>(std::move(s));
}

absl::StatusOr<std::unique_ptr<OverlaySnapshotter>> OverlaySnapshotter::OpenWithConfig(
    const SnapshotterOptions& options, MountConfig mount_config) {
  std::string root = options.root;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  ZSNAP_OVERLAY_RETURN_IF_ERROR(MakeDirs(root, 0700));
  const std::string snapshots_dir = absl::StrCat(root, "/snapshots");
  if (mkdir(snapshots_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoStatus("mkdir", snapshots_dir, errno);
  }
  ZSNAP_OVERLAY_ASSIGN_OR_RETURN(
      std::unique_ptr<MetaStore> store,
      MetaStore::Open(absl::StrCat(root, "/metadata.db"), options.durable));
  mount_config.snapshots_dir = snapshots_dir;
  std::unique_ptr<OverlaySnapshotter> s(new OverlaySnapshotter(
      std::move(root), std::move(mount_config), options.durable, std::move(store)));
  // Directories a crash left behind must go before the store hands out their ids again. A
  // tree that cannot be removed now is not fatal: it has been moved aside and a later
  // Cleanup() retries it.
  absl::Status removal;
  ZSNAP_OVERLAY_RETURN_IF_ERROR(s->CleanupOrphans(&removal));
  if (!removal.ok()) {
    spdlog::error("overlay op=open root={} cleanup_error=\"{}\"", s->root_, removal.ToString());
  }
  spdlog::info("overlay op=open root={} index_off={} userxattr={} durable={}", s->root_,
               s->mount_config_.index_off, s->mount_config_.userxattr, s->durable_);
  return s;
}

OverlaySnapshotter::OverlaySnapshotter(std::string root, MountConfig mount_config, bool durable,
                                       std::unique_ptr<MetaStore> store)
    : root_(std::move(root)),
      snapshots_dir_(mount_config.snapshots_dir),
      mount_config_(std::move(mount_config)),
      durable_(durable),
      store_(std::move(store)) {}

absl::StatusOr<std::vector<Mount>> OverlaySnapshotter::Prepare(const std::string& key,
                                                               const std::string& parent,
                                                               const Labels& labels) {
  return CreateSnapshot(Kind::kActive, key, parent, labels);
}

absl::StatusOr<std::vector<Mount>> OverlaySnapshotter::View(const std::string& key,
                                                            const std::string& parent,
                                                            const Labels& labels) {
  return CreateSnapshot(Kind::kView, key, parent, labels);
}

absl::StatusOr<std::string> OverlaySnapshotter::BuildNewDir(Kind kind) {
  std::string dir;
  {
    // Create and register in one step, so a concurrent Cleanup never sees it unregistered.
    absl::MutexLock lock(&busy_mu_);
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(dir, MakeTempDir(snapshots_dir_, kNewPrefix));
    busy_.insert(dir);
  }
  absl::Status status = [&]() -> absl::Status {
    // 0755 whatever the umask: it is the root directory of the container's file system.
    ZSNAP_OVERLAY_RETURN_IF_ERROR(MakeDirWithMode(absl::StrCat(dir, "/fs"), 0755));
    if (kind == Kind::kActive) {
      ZSNAP_OVERLAY_RETURN_IF_ERROR(MakeDirWithMode(absl::StrCat(dir, "/work"), 0711));
    }
    if (durable_) ZSNAP_OVERLAY_RETURN_IF_ERROR(FsyncDir(dir));
    return absl::OkStatus();
  }();
  if (!status.ok()) {
    if (absl::Status rm = RemoveBusyTree(dir); !rm.ok()) {
      spdlog::error("overlay op=create_dir path={} cleanup_error=\"{}\"", dir, rm.ToString());
    }
    return status;
  }
  return dir;
}

absl::StatusOr<std::string> OverlaySnapshotter::MakeTrashDir() {
  absl::MutexLock lock(&busy_mu_);
  ZSNAP_OVERLAY_ASSIGN_OR_RETURN(std::string dir, MakeTempDir(snapshots_dir_, kTrashPrefix));
  busy_.insert(dir);
  return dir;
}

absl::StatusOr<std::string> OverlaySnapshotter::MoveAside(const std::string& path) {
  // ENOENT anywhere: the entry went away by itself (a concurrent Remove or Cleanup took it),
  // which is all this wanted.
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return std::string();
    return ErrnoStatus("lstat", path, errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("unlink", path, errno);
    return std::string();
  }
  ZSNAP_OVERLAY_ASSIGN_OR_RETURN(std::string trash, MakeTrashDir());
  // Renaming a directory onto an empty directory replaces it atomically.
  if (rename(path.c_str(), trash.c_str()) != 0) {
    const int err = errno;
    (void)RemoveBusyTree(trash);
    if (err == ENOENT) return std::string();
    return ErrnoStatus("rename", path, err);
  }
  return trash;
}

absl::Status OverlaySnapshotter::RemoveBusyTree(const std::string& path) {
  absl::Status status = RemoveTree(path);
  Unregister(path);
  return status;
}

void OverlaySnapshotter::Unregister(const std::string& path) {
  absl::MutexLock lock(&busy_mu_);
  busy_.erase(path);
}

absl::StatusOr<std::vector<Mount>> OverlaySnapshotter::CreateSnapshot(Kind kind,
                                                                      const std::string& key,
                                                                      const std::string& parent,
                                                                      const Labels& labels) {
  ZSNAP_OVERLAY_RETURN_IF_ERROR(ValidateLabels(labels));
  ZSNAP_OVERLAY_ASSIGN_OR_RETURN(const std::string td, BuildNewDir(kind));

  SnapshotRef ref;
  std::string path;       // snapshots/<id> once renamed into place
  std::string displaced;  // a stale snapshots/<id> moved out of the way
  bool renamed = false;
  // Undoes the rename while the store lock is still held, before the id can be handed out
  // again; the tree is then removed under its temporary name.
  const auto rename_back = [&] {
    if (!renamed) return;
    if (rename(path.c_str(), td.c_str()) != 0) {
      spdlog::error("overlay op=create key={} path={} error=\"{}\"", key, path,
                    ErrnoStatus("rename", path, errno).ToString());
    }
    renamed = false;
  };
  absl::Status status = store_->Update(
      [&](StoreTx& tx) -> absl::Status {
        ZSNAP_OVERLAY_ASSIGN_OR_RETURN(ref, tx.CreateSnapshot(kind, key, parent, labels));
        if (!ref.parent_ids.empty()) {
          // The new upper directory takes the owner of the parent's, as containerd does.
          const std::string parent_fs = UpperPath(snapshots_dir_, ref.parent_ids[0]);
          struct stat st;
          if (stat(parent_fs.c_str(), &st) != 0) return ErrnoStatus("stat", parent_fs, errno);
          const std::string fs = absl::StrCat(td, "/fs");
          if (lchown(fs.c_str(), st.st_uid, st.st_gid) != 0) {
            return ErrnoStatus("lchown", fs, errno);
          }
        }
        path = absl::StrCat(snapshots_dir_, "/", ref.id);
        if (rename(td.c_str(), path.c_str()) != 0) {
          if (errno != ENOTEMPTY && errno != EEXIST && errno != ENOTDIR) {
            return ErrnoStatus("rename", td, errno);
          }
          // A directory left by a crash between rename and commit, whose id SQLite has handed
          // out again: it belongs to no snapshot, move it aside.
          ZSNAP_OVERLAY_ASSIGN_OR_RETURN(displaced, MoveAside(path));
          if (rename(td.c_str(), path.c_str()) != 0) return ErrnoStatus("rename", td, errno);
        }
        renamed = true;
        if (durable_) {
          if (absl::Status s = FsyncDir(snapshots_dir_); !s.ok()) {
            rename_back();
            return s;
          }
        }
        return absl::OkStatus();
      },
      rename_back);
  if (!displaced.empty()) {
    if (absl::Status rm = RemoveBusyTree(displaced); !rm.ok()) {
      spdlog::error("overlay op=create key={} path={} cleanup_error=\"{}\"", key, displaced,
                    rm.ToString());
    }
  }
  if (!status.ok()) {
    if (absl::Status rm = RemoveBusyTree(td); !rm.ok()) {
      spdlog::error("overlay op=create key={} path={} cleanup_error=\"{}\"", key, td,
                    rm.ToString());
    }
    return status;
  }
  Unregister(td);
  spdlog::info("overlay op={} key={} parent={} id={}", kind == Kind::kActive ? "prepare" : "view",
               key, parent, ref.id);
  return BuildMounts(mount_config_, ref.kind, ref.id, ref.parent_ids);
}

absl::StatusOr<std::vector<Mount>> OverlaySnapshotter::Mounts(const std::string& key) {
  SnapshotRef ref;
  ZSNAP_OVERLAY_RETURN_IF_ERROR(store_->View([&](StoreTx& tx) -> absl::Status {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(ref, tx.GetSnapshot(key));
    return absl::OkStatus();
  }));
  spdlog::debug("overlay op=mounts key={} id={}", key, ref.id);
  return BuildMounts(mount_config_, ref.kind, ref.id, ref.parent_ids);
}

absl::Status OverlaySnapshotter::Commit(const std::string& name, const std::string& key,
                                        const Labels& labels, const std::string& parent) {
  return CommitWithUsage(name, key, labels, parent, /*measure=*/true);
}

absl::Status OverlaySnapshotter::CommitMeasuringLater(const std::string& name,
                                                      const std::string& key,
                                                      const Labels& labels) {
  return CommitWithUsage(name, key, labels, "", /*measure=*/false);
}

absl::Status OverlaySnapshotter::CommitWithUsage(const std::string& name, const std::string& key,
                                                 const Labels& labels, const std::string& parent,
                                                 bool measure) {
  ZSNAP_OVERLAY_RETURN_IF_ERROR(ValidateLabels(labels));
  SnapshotRecord rec;
  ZSNAP_OVERLAY_RETURN_IF_ERROR(store_->View([&](StoreTx& tx) -> absl::Status {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(rec, tx.GetInfo(key));
    return absl::OkStatus();
  }));
  // Measure with no lock held; a key that is not Active is refused by CommitActive below.
  Usage usage = kNotMeasured;
  if (measure && rec.info.kind == Kind::kActive) {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(usage, DiskUsage(UpperPath(snapshots_dir_, rec.id)));
  }
  ZSNAP_OVERLAY_RETURN_IF_ERROR(store_->Update([&](StoreTx& tx) -> absl::Status {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(const int64_t id,
                                   tx.CommitActive(key, name, usage, labels, parent));
    if (id != rec.id) {
      // Removed and prepared again while we measured: the usage is of another directory.
      return absl::AbortedError(
          absl::StrFormat("snapshot %s was replaced while being committed", key));
    }
    return absl::OkStatus();
  }));
  if (measure) {
    spdlog::info("overlay op=commit key={} name={} id={} size={} inodes={}", key, name, rec.id,
                 usage.size, usage.inodes);
  } else {
    spdlog::info("overlay op=commit key={} name={} id={} usage=at-first-request", key, name,
                 rec.id);
  }
  return absl::OkStatus();
}

absl::Status OverlaySnapshotter::Remove(const std::string& key) {
  SnapshotRecord rec;
  ZSNAP_OVERLAY_RETURN_IF_ERROR(store_->Update([&](StoreTx& tx) -> absl::Status {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(rec, tx.Remove(key));
    return absl::OkStatus();
  }));
  spdlog::info("overlay op=remove key={} id={} kind={}", key, rec.id, KindName(rec.info.kind));

  // The metadata is gone: from here on a failure only leaves an orphan directory, which
  // Cleanup() removes; the caller's Remove has succeeded either way.
  const std::string path = absl::StrCat(snapshots_dir_, "/", rec.id);
  absl::Status status = [&]() -> absl::Status {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(const std::string trash, MakeTrashDir());
    if (rename(path.c_str(), trash.c_str()) != 0) {
      const int err = errno;
      (void)RemoveBusyTree(trash);
      // ENOENT: a concurrent Cleanup saw the orphan first and took it.
      if (err == ENOENT) return absl::OkStatus();
      return ErrnoStatus("rename", path, err);
    }
    return RemoveBusyTree(trash);
  }();
  if (!status.ok()) {
    spdlog::error("overlay op=remove key={} id={} error=\"{}\" (left for Cleanup)", key, rec.id,
                  status.ToString());
  }
  return absl::OkStatus();
}

absl::StatusOr<Info> OverlaySnapshotter::Stat(const std::string& key) {
  SnapshotRecord rec;
  ZSNAP_OVERLAY_RETURN_IF_ERROR(store_->View([&](StoreTx& tx) -> absl::Status {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(rec, tx.GetInfo(key));
    return absl::OkStatus();
  }));
  spdlog::debug("overlay op=stat key={} id={}", key, rec.id);
  return std::move(rec.info);
}

absl::StatusOr<Info> OverlaySnapshotter::Update(const Info& info,
                                                const std::vector<std::string>& fieldpaths) {
  ZSNAP_OVERLAY_RETURN_IF_ERROR(ValidateLabels(info.labels));
  Info updated;
  ZSNAP_OVERLAY_RETURN_IF_ERROR(store_->Update([&](StoreTx& tx) -> absl::Status {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(updated, tx.UpdateInfo(info, fieldpaths));
    return absl::OkStatus();
  }));
  spdlog::info("overlay op=update key={} labels={}", info.name, updated.labels.size());
  return updated;
}

absl::StatusOr<std::vector<Info>> OverlaySnapshotter::List(
    const std::vector<std::string>& filters) {
  ZSNAP_OVERLAY_ASSIGN_OR_RETURN(const Filter filter, Filter::ParseAll(filters));
  std::vector<Info> all;
  ZSNAP_OVERLAY_RETURN_IF_ERROR(store_->View([&](StoreTx& tx) -> absl::Status {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(all, tx.ListAll());
    return absl::OkStatus();
  }));
  std::erase_if(all, [&](const Info& info) { return !filter.Match(info); });
  spdlog::debug("overlay op=list filters={} results={}", filters.size(), all.size());
  return all;
}

absl::StatusOr<Usage> OverlaySnapshotter::GetUsage(const std::string& key) {
  SnapshotRecord rec;
  ZSNAP_OVERLAY_RETURN_IF_ERROR(store_->View([&](StoreTx& tx) -> absl::Status {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(rec, tx.GetInfo(key));
    return absl::OkStatus();
  }));
  if (rec.info.kind == Kind::kView) return rec.usage;  // zero
  if (rec.info.kind == Kind::kCommitted && rec.usage != kNotMeasured) return rec.usage;
  // Active (live), or committed by CommitMeasuringLater: its tree no longer changes, so the
  // first measurement is the one Commit would have stored.
  absl::StatusOr<Usage> usage = DiskUsage(UpperPath(snapshots_dir_, rec.id));
  if (absl::IsNotFound(usage.status())) {
    return absl::NotFoundError(absl::StrFormat("snapshot %s does not exist", key));
  }
  if (!usage.ok() || rec.info.kind == Kind::kActive) return usage;
  absl::Status stored = store_->Update(
      [&](StoreTx& tx) -> absl::Status { return tx.StoreMeasuredUsage(rec.id, *usage); });
  if (!stored.ok()) {
    // The answer is right either way; the next call measures again.
    spdlog::warn("overlay op=usage key={} id={} storing the measured usage: {}", key, rec.id,
                 stored.ToString());
  }
  return usage;
}

absl::StatusOr<std::string> OverlaySnapshotter::UpperDir(const std::string& key) {
  SnapshotRecord rec;
  ZSNAP_OVERLAY_RETURN_IF_ERROR(store_->View([&](StoreTx& tx) -> absl::Status {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(rec, tx.GetInfo(key));
    return absl::OkStatus();
  }));
  return UpperPath(snapshots_dir_, rec.id);
}

absl::Status OverlaySnapshotter::Cleanup() {
  absl::Status removal;
  absl::Status status = CleanupOrphans(&removal);
  status.Update(removal);
  return status;
}

absl::Status OverlaySnapshotter::CleanupOrphans(absl::Status* removal) {
  std::vector<std::string> trash;
  // Under the store lock the set of ids cannot change, so every orphan seen here really is
  // one, and moving it aside keeps a later snapshot that is handed its id out of its way.
  absl::Status status = store_->View([&](StoreTx& tx) -> absl::Status {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(const absl::flat_hash_set<int64_t> ids, tx.Ids());
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(snapshots_dir_));
    std::vector<std::string> orphans;
    {
      absl::MutexLock lock(&busy_mu_);
      for (const std::string& name : names) {
        std::string path = absl::StrCat(snapshots_dir_, "/", name);
        if (ids.contains(IdOfName(name)) || busy_.contains(path)) continue;
        orphans.push_back(std::move(path));
      }
    }
    for (const std::string& path : orphans) {
      ZSNAP_OVERLAY_ASSIGN_OR_RETURN(std::string moved, MoveAside(path));
      if (!moved.empty()) trash.push_back(std::move(moved));
    }
    return absl::OkStatus();
  });
  // Remove whatever was moved aside even if the scan stopped half-way; keep the first error.
  for (const std::string& path : trash) {
    absl::Status rm = RemoveBusyTree(path);
    if (!rm.ok()) {
      spdlog::error("overlay op=cleanup path={} error=\"{}\"", path, rm.ToString());
      removal->Update(rm);
    }
  }
  spdlog::info("overlay op=cleanup removed={} ok={}", trash.size(), status.ok() && removal->ok());
  return status;
}

}  // namespace zsnap::overlay
