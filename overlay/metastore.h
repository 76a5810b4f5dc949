// MetaStore: the snapshot metadata, the truth the directory tree follows (containerd
// snapshots/storage/{metastore,bolt}.go), kept in SQLite:
//
//   snapshots(id, key, parent_id, kind, created_ns, updated_ns, size, inodes)
//   labels(snapshot_id, key, value)
//
// `id` is handed out by AUTOINCREMENT, so an id is never reused once a transaction that
// allocated it has committed; it names the snapshot's directory. `key` is the Active/View key
// or the Committed name (one key space). Children point at their parent by id, so Commit,
// which keeps the id and changes the key, needs no re-linking. Timestamps are Unix ns.
//
// Every operation runs inside one transaction: View() for reads, Update() for writes. The
// callback gets a StoreTx with the containerd storage operations; returning an error rolls the
// whole transaction back.
//
// Thread safety: all methods may be called from any thread. One SQLite connection is
// serialised by a mutex held for the duration of each transaction, so a callback must stay
// short (no tree walks); the StoreTx must not escape its callback.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "overlay/types.h"

namespace zsnap::overlay {

namespace sqlite {
class Connection;
}

class MetaStore;

// What Stat/Usage need: the Info, the snapshot's id and its stored usage.
struct SnapshotRecord {
  int64_t id = 0;
  Info info;
  Usage usage;  // measured at Commit (kNotMeasured: not yet); zero for Active and View
};

// The stored usage of a snapshot committed by CommitMeasuringLater until GetUsage measures it
// (size and inodes -1; a real measurement is never negative).
inline constexpr Usage kNotMeasured{.size = -1, .inodes = -1};

// What mounts need: the id, the kind and the parent chain (nearest first).
struct SnapshotRef {
  int64_t id = 0;
  Kind kind = Kind::kUnknown;
  std::vector<int64_t> parent_ids;
};

// The operations of one transaction. Errors use containerd's codes; write operations in a
// View() transaction fail with FailedPrecondition.
class StoreTx {
 public:
  // NotFound if `key` does not exist.
  absl::StatusOr<SnapshotRecord> GetInfo(const std::string& key);
  // An Active or View snapshot; NotFound if missing, FailedPrecondition if Committed.
  absl::StatusOr<SnapshotRef> GetSnapshot(const std::string& key);
  // Creates an Active or View `key` on committed `parent` (may be empty), Created == Updated ==
  // now. NotFound: parent missing; InvalidArgument: parent not committed or `kind` not
  // Active/View; AlreadyExists: key taken. Empty label values are dropped.
  absl::StatusOr<SnapshotRef> CreateSnapshot(Kind kind, const std::string& key,
                                             const std::string& parent, const Labels& labels);
  // Turns Active `key` into Committed `name` (same id) with exactly `labels`, `usage`, and
  // Created == Updated == now. `parent` empty keeps the Active's parent; otherwise it must
  // equal it, or graft the parentless Active onto committed `parent` (containerd 2.2 rebase).
  // AlreadyExists: name taken; NotFound: key (or new parent) missing; FailedPrecondition: key
  // not Active; InvalidArgument: parent differs from the Active's or is not committed.
  absl::StatusOr<int64_t> CommitActive(const std::string& key, const std::string& name,
                                       const Usage& usage, const Labels& labels,
                                       const std::string& parent);
  // Stores the measured usage of Committed snapshot `id` if it still has kNotMeasured (a
  // snapshot removed meanwhile, or measured by a concurrent call, is left alone).
  absl::Status StoreMeasuredUsage(int64_t id, const Usage& usage);
  // Deletes `key`; returns what it was. NotFound if missing; FailedPrecondition ("cannot
  // remove snapshot with child") if some snapshot names it as parent.
  absl::StatusOr<SnapshotRecord> Remove(const std::string& key);
  // containerd UpdateInfo: only labels change, as selected by `fieldpaths` (empty or "labels":
  // the whole map; "labels.<k>": one key; else InvalidArgument); Updated = now. Returns the
  // stored Info. NotFound if info.name does not exist.
  absl::StatusOr<Info> UpdateInfo(const Info& info, const std::vector<std::string>& fieldpaths);
  // Every snapshot, ordered by key.
  absl::StatusOr<std::vector<Info>> ListAll();
  // The ids of every snapshot.
  absl::StatusOr<absl::flat_hash_set<int64_t>> Ids();

 private:
  friend class MetaStore;
  StoreTx(sqlite::Connection* db, bool writable) : db_(db), writable_(writable) {}

  absl::Status CheckWritable() const;
  absl::StatusOr<Labels> ReadLabels(int64_t id);
  absl::Status WriteLabels(int64_t id, const Labels& labels);
  absl::StatusOr<std::vector<int64_t>> ParentChain(int64_t id);
  // id, kind and parent id of `key`; NotFound if missing.
  struct IdKind {
    int64_t id;
    Kind kind;
    int64_t parent_id;  // 0 for none
  };

  absl::StatusOr<IdKind> Lookup(const std::string& key);

  sqlite::Connection* db_;
  bool writable_;
};

class MetaStore {
 public:
  // Opens or creates the store at `path`. `durable`: fsync every commit (synchronous=FULL)
  // instead of leaving it to the OS.
  static absl::StatusOr<std::unique_ptr<MetaStore>> Open(const std::string& path, bool durable);
  ~MetaStore();

  // Runs `fn` in a read transaction.
  absl::Status View(absl::FunctionRef<absl::Status(StoreTx&)> fn) ABSL_LOCKS_EXCLUDED(mu_);
  // Runs `fn` in a write transaction and commits if it returns OK. If the commit itself fails,
  // `undo` runs (still under the store's lock, so nothing can observe the state in between)
  // and the commit error is returned.
  absl::Status Update(absl::FunctionRef<absl::Status(StoreTx&)> fn, absl::FunctionRef<void()> undo)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Update(absl::FunctionRef<absl::Status(StoreTx&)> fn) ABSL_LOCKS_EXCLUDED(mu_) {
    return Update(fn, [] {});
  }

 private:
  explicit MetaStore(std::unique_ptr<sqlite::Connection> db);
  absl::Status Init(bool durable) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::unique_ptr<sqlite::Connection> db_ ABSL_GUARDED_BY(mu_);
};

}  // namespace zsnap::overlay
