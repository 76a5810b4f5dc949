// OverlaySnapshotter: the Snapshotter behind Snapshotter::Open (see snapshotter.h for the
// contract and the on-disk layout). Internal header, exposed for tests.
//
// Directory protocol (metadata is the truth, directories follow):
//  * create: build snapshots/new-XXXXXX/{fs,work} with no lock held; in the store transaction
//    that allocates the id, rename it to snapshots/<id>; if the commit fails, rename it back
//    (still under the store lock) and remove it.
//  * remove: delete the metadata and commit first; then rename snapshots/<id> to a fresh
//    snapshots/rm-XXXXXX and remove that tree with no lock held. If the removal fails the
//    metadata is already gone, so Remove still succeeds; the error is logged and the next
//    Cleanup() (or the one at the next Open) retries it.
//  * cleanup: under the store lock, every entry of snapshots/ that is neither a known id nor a
//    temporary directory in use by a running operation is renamed into a fresh rm-XXXXXX;
//    the trees are then removed with no lock held. Open() runs it once, so a snapshots/<id>
//    left by a crash between rename and commit is gone before SQLite can hand out <id> again.
//
// Locks: the store's own mutex (held for one transaction) may be followed by busy_mu_, never
// the other way round. No lock is held while a tree is built, removed or measured.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "overlay/metastore.h"
#include "overlay/mounts.h"
#include "overlay/snapshotter.h"

namespace zsnap::overlay {

class OverlaySnapshotter final : public Snapshotter {
 public:
  // Opens the root with an explicit mount configuration (tests choose index=off/userxattr).
  static absl::StatusOr<std::unique_ptr<OverlaySnapshotter>> OpenWithConfig(
      const SnapshotterOptions& options, MountConfig mount_config);

  absl::StatusOr<std::vector<Mount>> Prepare(const std::string& key, const std::string& parent,
                                             const Labels& labels) override;
  absl::StatusOr<std::vector<Mount>> View(const std::string& key, const std::string& parent,
                                          const Labels& labels) override;
  absl::StatusOr<std::vector<Mount>> Mounts(const std::string& key) override;
  absl::Status Commit(const std::string& name, const std::string& key, const Labels& labels,
                      const std::string& parent) override;
  absl::Status CommitMeasuringLater(const std::string& name, const std::string& key,
                                    const Labels& labels) override;
  absl::Status Remove(const std::string& key) override;
  absl::StatusOr<Info> Stat(const std::string& key) override;
  absl::StatusOr<Info> Update(const Info& info,
                              const std::vector<std::string>& fieldpaths) override;
  absl::StatusOr<std::vector<Info>> List(const std::vector<std::string>& filters) override;
  absl::StatusOr<Usage> GetUsage(const std::string& key) override;
  absl::Status Cleanup() override;
  absl::StatusOr<std::string> UpperDir(const std::string& key) override;
  const std::string& root() const override { return root_; }

  const MountConfig& mount_config() const { return mount_config_; }

 private:
  OverlaySnapshotter(std::string root, MountConfig mount_config, bool durable,
                     std::unique_ptr<MetaStore> store);

  absl::Status CommitWithUsage(const std::string& name, const std::string& key,
                              const Labels& labels, const std::string& parent, bool measure);
  absl::StatusOr<std::vector<Mount>> CreateSnapshot(Kind kind, const std::string& key,
                                                    const std::string& parent,
                                                    const Labels& labels);
  // Builds new-XXXXXX/{fs,work} (work for Active only); returns its path, registered busy.
  absl::StatusOr<std::string> BuildNewDir(Kind kind);
  // A fresh, empty, busy-registered rm-XXXXXX to rename a doomed tree onto.
  absl::StatusOr<std::string> MakeTrashDir();
  // Moves whatever occupies `path` (a directory or a file) out of the way into trash; returns
  // the trash path, or empty if there is nothing left to remove (`path` was a non-directory
  // and has been unlinked, or has vanished).
  absl::StatusOr<std::string> MoveAside(const std::string& path);
  // The orphan pass of Cleanup(): returns the error that stopped moving orphans aside (the
  // part that must succeed before new ids are handed out); tree removal errors go to
  // `*removal`.
  absl::Status CleanupOrphans(absl::Status* removal);
  // Removes a busy-registered tree and unregisters it.
  absl::Status RemoveBusyTree(const std::string& path);
  void Unregister(const std::string& path);

  const std::string root_;
  const std::string snapshots_dir_;
  const MountConfig mount_config_;
  const bool durable_;
  const std::unique_ptr<MetaStore> store_;

  absl::Mutex busy_mu_;  // taken after the store's lock, never before
  // Full paths of temporary directories (new-*, rm-*) owned by an operation in progress.
  absl::flat_hash_set<std::string> busy_ ABSL_GUARDED_BY(busy_mu_);
};

}  // namespace zsnap::overlay
