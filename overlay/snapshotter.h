// Snapshotter: containerd's overlayfs snapshotter (plugins/snapshots/overlay/overlay.go),
// over a SQLite metadata store and a directory tree:
//
//   <root>/metadata.db          the store (the truth)
//   <root>/snapshots/<id>/fs    the layer's upper directory (what the snapshot adds)
//   <root>/snapshots/<id>/work  overlayfs work directory (Active snapshots only)
//
// <id> is a number handed out by the store, never a caller's key. Every operation runs in
// one store transaction; directories are built under a temporary name and renamed into place,
// and removed only after the metadata commit. Cleanup() removes directories the store does
// not know, so a crash at any instant leaves a root that opens and agrees with the disk
// after cleanup.
//
// Thread safety: all methods may be called concurrently from any thread. The store is
// serialised internally; no lock is held while directory trees are created or removed.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "overlay/types.h"

namespace zsnap::overlay {

struct SnapshotterOptions {
  std::string root;  // created 0700 if missing
  // Add "userxattr" to overlay mounts. Needed only inside a user namespace (kernel 5.11+);
  // containerd's overlayutils.NeedsUserXAttr decides the same way.
  enum class UserXattr { kAuto, kOn, kOff } userxattr = UserXattr::kAuto;
  // fsync the store on every commit (SQLite synchronous=FULL). Off only for tests.
  bool durable = true;
};

class Snapshotter {
 public:
  static absl::StatusOr<std::unique_ptr<Snapshotter>> Open(const SnapshotterOptions& options);
  virtual ~Snapshotter() = default;

  // Creates Active `key` on committed `parent` (may be empty) and returns its mounts.
  // NotFound: parent missing; InvalidArgument: parent not committed or bad labels;
  // AlreadyExists: key taken.
  virtual absl::StatusOr<std::vector<Mount>> Prepare(const std::string& key,
                                                     const std::string& parent,
                                                     const Labels& labels) = 0;
  // Creates read-only View `key` of committed `parent`; errors as Prepare.
  virtual absl::StatusOr<std::vector<Mount>> View(const std::string& key,
                                                  const std::string& parent,
                                                  const Labels& labels) = 0;
  // Mounts of an Active or View key. NotFound if missing; FailedPrecondition if committed.
  virtual absl::StatusOr<std::vector<Mount>> Mounts(const std::string& key) = 0;
  // Turns Active `key` into Committed `name` with exactly `labels`. `parent` (containerd 2.2+
  // rebase) may be empty; if set it must equal the Active's parent or the Active must have
  // none. NotFound: key missing; FailedPrecondition: key not Active; AlreadyExists: name taken.
  virtual absl::Status Commit(const std::string& name, const std::string& key,
                              const Labels& labels, const std::string& parent) = 0;
  // Commit (no rebase) that leaves the usage to be measured by the first GetUsage of `name`,
  // which stores it. For a tree its writer has just finished and nobody changes again — the
  // remote path, where walking a 1 GB layer at commit sat on the pull's critical path.
  virtual absl::Status CommitMeasuringLater(const std::string& name, const std::string& key,
                                            const Labels& labels) = 0;
  // Removes any kind. NotFound: missing; FailedPrecondition ("cannot remove snapshot with
  // child"): has children.
  virtual absl::Status Remove(const std::string& key) = 0;
  virtual absl::StatusOr<Info> Stat(const std::string& key) = 0;
  // Updates labels only. `fieldpaths` empty or {"labels"} replaces the map; "labels.<k>"
  // copies one key; anything else is InvalidArgument. Empty values delete.
  virtual absl::StatusOr<Info> Update(const Info& info,
                                      const std::vector<std::string>& fieldpaths) = 0;
  // Snapshots matching any of `filters` (containerd filter syntax; none = all).
  // InvalidArgument on a parse error. A snapshot of the store at one instant.
  virtual absl::StatusOr<std::vector<Info>> List(const std::vector<std::string>& filters) = 0;
  // Live for Active snapshots, measured at Commit (or at the first GetUsage after
  // CommitMeasuringLater) for Committed, zero for Views.
  virtual absl::StatusOr<Usage> GetUsage(const std::string& key) = 0;
  // Removes directories under <root>/snapshots that the store does not know.
  virtual absl::Status Cleanup() = 0;

  // The directory holding `key`'s layer contents (<root>/snapshots/<id>/fs), for the remote
  // path that fills an Active snapshot itself. NotFound if missing.
  virtual absl::StatusOr<std::string> UpperDir(const std::string& key) = 0;
  virtual const std::string& root() const = 0;
};

}  // namespace zsnap::overlay
