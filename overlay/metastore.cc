#include "overlay/metastore.h"

#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "overlay/labels.h"
#include "overlay/sqlite_util.h"
#include "overlay/status_util.h"

namespace zsnap::overlay {
namespace {

constexpr int kSchemaVersion = 1;

constexpr char kSchema[] = R"sql(
CREATE TABLE snapshots (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  key        TEXT    NOT NULL UNIQUE,
  parent_id  INTEGER REFERENCES snapshots(id),
  kind       INTEGER NOT NULL CHECK (kind IN (1, 2, 3)),
  created_ns INTEGER NOT NULL,
  updated_ns INTEGER NOT NULL,
  size       INTEGER NOT NULL DEFAULT 0,
  inodes     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX snapshots_by_parent ON snapshots(parent_id);
CREATE TABLE labels (
  snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
  key         TEXT    NOT NULL,
  value       TEXT    NOT NULL,
  PRIMARY KEY (snapshot_id, key)
) WITHOUT ROWID;
PRAGMA user_version = 1;
)sql";

constexpr char kLookup[] = "SELECT id, kind, parent_id FROM snapshots WHERE key = ?1";
constexpr char kGetInfo[] = R"sql(
SELECT s.id, s.kind, p.key, s.created_ns, s.updated_ns, s.size, s.inodes
FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id
WHERE s.key = ?1)sql";
constexpr char kParentChain[] = R"sql(
WITH RECURSIVE chain(id, depth) AS (
  SELECT parent_id, 0 FROM snapshots WHERE id = ?1 AND parent_id IS NOT NULL
  UNION ALL
  SELECT s.parent_id, c.depth + 1 FROM snapshots s JOIN chain c ON s.id = c.id
  WHERE s.parent_id IS NOT NULL
)
SELECT id FROM chain ORDER BY depth)sql";
constexpr char kInsert[] = R"sql(
INSERT INTO snapshots (key, parent_id, kind, created_ns, updated_ns) VALUES (?1, ?2, ?3, ?4, ?4)
)sql";
constexpr char kCommit[] = R"sql(
UPDATE snapshots
SET key = ?2, kind = 3, parent_id = ?3, created_ns = ?4, updated_ns = ?4, size = ?5, inodes = ?6
WHERE id = ?1)sql";
constexpr char kStoreUsage[] = R"sql(
UPDATE snapshots SET size = ?2, inodes = ?3 WHERE id = ?1 AND kind = 3 AND size < 0)sql";
constexpr char kHasChild[] = "SELECT 1 FROM snapshots WHERE parent_id = ?1 LIMIT 1";
constexpr char kDelete[] = "DELETE FROM snapshots WHERE id = ?1";
constexpr char kTouch[] = "UPDATE snapshots SET updated_ns = ?2 WHERE id = ?1";
constexpr char kReadLabels[] = "SELECT key, value FROM labels WHERE snapshot_id = ?1";
constexpr char kDeleteLabels[] = "DELETE FROM labels WHERE snapshot_id = ?1";
constexpr char kInsertLabel[] = "INSERT INTO labels (snapshot_id, key, value) VALUES (?1, ?2, ?3)";
constexpr char kListAll[] = R"sql(
SELECT s.id, s.key, s.kind, p.key, s.created_ns, s.updated_ns
FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id
ORDER BY s.key)sql";
constexpr char kAllLabels[] = "SELECT snapshot_id, key, value FROM labels";
constexpr char kIds[] = "SELECT id FROM snapshots";

Kind KindFromInt(int64_t v) {
  switch (v) {
    case 1:
      return Kind::kView;
    case 2:
      return Kind::kActive;
    case 3:
      return Kind::kCommitted;
    default:
      return Kind::kUnknown;
  }
}

int64_t NowNanos() { return absl::ToUnixNanos(absl::Now()); }

}  // namespace

absl::StatusOr<std::unique_ptr<MetaStore>> MetaStore::Open(const std::string& path, bool durable) {
  ZSNAP_OVERLAY_ASSIGN_OR_RETURN(std::unique_ptr<sqlite::Connection> db,
                                 sqlite::Connection::Open(path));
  std::unique_ptr<MetaStore> store(new MetaStore(std::move(db)));
  {
    absl::MutexLock lock(&store->mu_);
    ZSNAP_OVERLAY_RETURN_IF_ERROR(store->Init(durable));
  }
  return store;
}

MetaStore::MetaStore(std::unique_ptr<sqlite::Connection> db) : db_(std::move(db)) {}

MetaStore::~MetaStore() = default;

absl::Status MetaStore::Init(bool durable) {
  ZSNAP_OVERLAY_RETURN_IF_ERROR(db_->Exec("PRAGMA busy_timeout = 5000"));
  ZSNAP_OVERLAY_RETURN_IF_ERROR(db_->Exec("PRAGMA journal_mode = WAL"));
  ZSNAP_OVERLAY_RETURN_IF_ERROR(
      db_->Exec(durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = OFF"));
  ZSNAP_OVERLAY_RETURN_IF_ERROR(db_->Exec("PRAGMA foreign_keys = ON"));

  ZSNAP_OVERLAY_RETURN_IF_ERROR(db_->Exec("BEGIN IMMEDIATE"));
  absl::Status status = [&]() -> absl::Status {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(sqlite::Stmt version, db_->Prepare("PRAGMA user_version"));
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(bool row, version.Step());
    const int64_t v = row ? version.Int(0) : 0;
    if (v == kSchemaVersion) return absl::OkStatus();
    if (v != 0) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "metadata store has schema version %d, this build knows %d", v, kSchemaVersion));
    }
    return db_->Exec(kSchema);
  }();
  if (!status.ok()) {
    (void)db_->Exec("ROLLBACK");
    return status;
  }
  return db_->Exec("COMMIT");
}

absl::Status MetaStore::View(absl::FunctionRef<absl::Status(StoreTx&)> fn) {
  absl::MutexLock lock(&mu_);
  ZSNAP_OVERLAY_RETURN_IF_ERROR(db_->Exec("BEGIN"));
  StoreTx tx(db_.get(), /*writable=*/false);
  absl::Status status = fn(tx);
  // A read transaction has nothing to keep; a failed ROLLBACK leaves nothing behind either.
  (void)db_->Exec("ROLLBACK");
  return status;
}

absl::Status MetaStore::Update(absl::FunctionRef<absl::Status(StoreTx&)> fn,
                               absl::FunctionRef<void()> undo) {
  absl::MutexLock lock(&mu_);
  ZSNAP_OVERLAY_RETURN_IF_ERROR(db_->Exec("BEGIN IMMEDIATE"));
  StoreTx tx(db_.get(), /*writable=*/true);
  if (absl::Status status = fn(tx); !status.ok()) {
    (void)db_->Exec("ROLLBACK");
    return status;
  }
  if (absl::Status status = db_->Exec("COMMIT"); !status.ok()) {
    (void)db_->Exec("ROLLBACK");  // SQLite may already have rolled back; harmless if so
    undo();
    return status;
  }
  return absl::OkStatus();
}

absl::Status StoreTx::CheckWritable() const {
  if (!writable_) return absl::FailedPreconditionError("write in a read-only transaction");
  return absl::OkStatus();
}

absl::StatusOr<StoreTx::IdKind> StoreTx::Lookup(const std::string& key) {
  ZSNAP_OVERLAY_ASSIGN_OR_RETURN(sqlite::Stmt stmt, db_->Prepare(kLookup));
  stmt.Bind(1, key);
  ZSNAP_OVERLAY_ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (!row) return absl::NotFoundError(absl::StrFormat("snapshot %s does not exist", key));
  return IdKind{stmt.Int(0), KindFromInt(stmt.Int(1)), stmt.IsNull(2) ? 0 : stmt.Int(2)};
}

absl::StatusOr<Labels> StoreTx::ReadLabels(int64_t id) {
  ZSNAP_OVERLAY_ASSIGN_OR_RETURN(sqlite::Stmt stmt, db_->Prepare(kReadLabels));
  stmt.Bind(1, id);
  Labels labels;
  while (true) {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) return labels;
    labels.emplace(stmt.Text(0), stmt.Text(1));
  }
}

absl::Status StoreTx::WriteLabels(int64_t id, const Labels& labels) {
  {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(sqlite::Stmt del, db_->Prepare(kDeleteLabels));
    ZSNAP_OVERLAY_RETURN_IF_ERROR(del.Bind(1, id).Run());
  }
  for (const auto& [key, value] : labels) {
    if (value.empty()) continue;  // an empty value means "absent"
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(sqlite::Stmt ins, db_->Prepare(kInsertLabel));
    ZSNAP_OVERLAY_RETURN_IF_ERROR(ins.Bind(1, id).Bind(2, key).Bind(3, value).Run());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> StoreTx::ParentChain(int64_t id) {
  ZSNAP_OVERLAY_ASSIGN_OR_RETURN(sqlite::Stmt stmt, db_->Prepare(kParentChain));
  stmt.Bind(1, id);
  std::vector<int64_t> chain;
  while (true) {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) return chain;
    chain.push_back(stmt.Int(0));
  }
}

absl::StatusOr<SnapshotRecord> StoreTx::GetInfo(const std::string& key) {
  SnapshotRecord rec;
  {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(sqlite::Stmt stmt, db_->Prepare(kGetInfo));
    stmt.Bind(1, key);
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) return absl::NotFoundError(absl::StrFormat("snapshot %s does not exist", key));
    rec.id = stmt.Int(0);
    rec.info.name = key;
    rec.info.kind = KindFromInt(stmt.Int(1));
    rec.info.parent = stmt.IsNull(2) ? "" : stmt.Text(2);
    rec.info.created = absl::FromUnixNanos(stmt.Int(3));
    rec.info.updated = absl::FromUnixNanos(stmt.Int(4));
    rec.usage = Usage{.size = stmt.Int(5), .inodes = stmt.Int(6)};
  }
  ZSNAP_OVERLAY_ASSIGN_OR_RETURN(rec.info.labels, ReadLabels(rec.id));
  return rec;
}

absl::StatusOr<SnapshotRef> StoreTx::GetSnapshot(const std::string& key) {
  ZSNAP_OVERLAY_ASSIGN_OR_RETURN(IdKind s, Lookup(key));
  if (s.kind != Kind::kActive && s.kind != Kind::kView) {
    return absl::FailedPreconditionError(
        absl::StrFormat("requested snapshot %s not active or view", key));
  }
  SnapshotRef ref{.id = s.id, .kind = s.kind, .parent_ids = {}};
  ZSNAP_OVERLAY_ASSIGN_OR_RETURN(ref.parent_ids, ParentChain(s.id));
  return ref;
}

absl::StatusOr<SnapshotRef> StoreTx::CreateSnapshot(Kind kind, const std::string& key,
                                                    const std::string& parent,
                                                    const Labels& labels) {
  ZSNAP_OVERLAY_RETURN_IF_ERROR(CheckWritable());
  if (kind != Kind::kActive && kind != Kind::kView) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "snapshot type %s invalid; only snapshots of type Active or View can be created",
        KindName(kind)));
  }
  int64_t parent_id = 0;
  if (!parent.empty()) {
    absl::StatusOr<IdKind> p = Lookup(parent);
    if (absl::IsNotFound(p.status())) {
      return absl::NotFoundError(absl::StrFormat("missing parent %s", parent));
    }
    if (!p.ok()) return p.status();
    if (p->kind != Kind::kCommitted) {
      return absl::InvalidArgumentError(
          absl::StrFormat("parent %s is not committed snapshot", parent));
    }
    parent_id = p->id;
  }
  if (absl::StatusOr<IdKind> existing = Lookup(key); existing.ok()) {
    return absl::AlreadyExistsError(absl::StrFormat("snapshot %s already exists", key));
  } else if (!absl::IsNotFound(existing.status())) {
    return existing.status();
  }

  {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(sqlite::Stmt ins, db_->Prepare(kInsert));
    ins.Bind(1, key);
    if (parent_id != 0) {
      ins.Bind(2, parent_id);
    } else {
      ins.BindNull(2);
    }
    ins.Bind(3, static_cast<int64_t>(kind)).Bind(4, NowNanos());  // Created == Updated
    ZSNAP_OVERLAY_RETURN_IF_ERROR(ins.Run());
  }
  SnapshotRef ref{.id = db_->LastInsertRowid(), .kind = kind, .parent_ids = {}};
  ZSNAP_OVERLAY_RETURN_IF_ERROR(WriteLabels(ref.id, labels));
  ZSNAP_OVERLAY_ASSIGN_OR_RETURN(ref.parent_ids, ParentChain(ref.id));
  return ref;
}

absl::StatusOr<int64_t> StoreTx::CommitActive(const std::string& key, const std::string& name,
                                              const Usage& usage, const Labels& labels,
                                              const std::string& parent) {
  ZSNAP_OVERLAY_RETURN_IF_ERROR(CheckWritable());
  // The order of the checks is containerd's: the name first, then the key.
  if (absl::StatusOr<IdKind> taken = Lookup(name); taken.ok()) {
    return absl::AlreadyExistsError(absl::StrFormat("committed snapshot %s already exists", name));
  } else if (!absl::IsNotFound(taken.status())) {
    return taken.status();
  }
  absl::StatusOr<IdKind> active = Lookup(key);
  if (absl::IsNotFound(active.status())) {
    return absl::NotFoundError(absl::StrFormat("failed to get active snapshot %s", key));
  }
  if (!active.ok()) return active.status();
  if (active->kind != Kind::kActive) {
    return absl::FailedPreconditionError(absl::StrFormat("snapshot %s is not active", key));
  }

  int64_t parent_id = active->parent_id;
  if (!parent.empty()) {
    absl::StatusOr<IdKind> p = Lookup(parent);
    if (absl::IsNotFound(p.status())) {
      return absl::NotFoundError(absl::StrFormat("missing parent %s", parent));
    }
    if (!p.ok()) return p.status();
    if (active->parent_id == 0) {
      // Rebase on commit: a parentless Active is grafted onto `parent`.
      if (p->kind != Kind::kCommitted) {
        return absl::InvalidArgumentError(
            absl::StrFormat("parent %s is not committed snapshot", parent));
      }
      parent_id = p->id;
    } else if (p->id != active->parent_id) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "snapshot %s has a different parent than %s, cannot rebase it", key, parent));
    }
  }

  {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(sqlite::Stmt upd, db_->Prepare(kCommit));
    upd.Bind(1, active->id).Bind(2, name);
    if (parent_id != 0) {
      upd.Bind(3, parent_id);
    } else {
      upd.BindNull(3);
    }
    upd.Bind(4, NowNanos()).Bind(5, usage.size).Bind(6, usage.inodes);
    ZSNAP_OVERLAY_RETURN_IF_ERROR(upd.Run());
  }
  ZSNAP_OVERLAY_RETURN_IF_ERROR(WriteLabels(active->id, labels));
  return active->id;
}

absl::Status StoreTx::StoreMeasuredUsage(int64_t id, const Usage& usage) {
  ZSNAP_OVERLAY_RETURN_IF_ERROR(CheckWritable());
  ZSNAP_OVERLAY_ASSIGN_OR_RETURN(sqlite::Stmt upd, db_->Prepare(kStoreUsage));
  upd.Bind(1, id).Bind(2, usage.size).Bind(3, usage.inodes);
  return upd.Run();
}

absl::StatusOr<SnapshotRecord> StoreTx::Remove(const std::string& key) {
  ZSNAP_OVERLAY_RETURN_IF_ERROR(CheckWritable());
  ZSNAP_OVERLAY_ASSIGN_OR_RETURN(SnapshotRecord rec, GetInfo(key));
  {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(sqlite::Stmt child, db_->Prepare(kHasChild));
    child.Bind(1, rec.id);
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(bool has_child, child.Step());
    if (has_child) {
      return absl::FailedPreconditionError(
          absl::StrFormat("cannot remove snapshot with child: %s", key));
    }
  }
  {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(sqlite::Stmt del, db_->Prepare(kDeleteLabels));
    ZSNAP_OVERLAY_RETURN_IF_ERROR(del.Bind(1, rec.id).Run());
  }
  ZSNAP_OVERLAY_ASSIGN_OR_RETURN(sqlite::Stmt del, db_->Prepare(kDelete));
  ZSNAP_OVERLAY_RETURN_IF_ERROR(del.Bind(1, rec.id).Run());
  return rec;
}

absl::StatusOr<Info> StoreTx::UpdateInfo(const Info& info,
                                         const std::vector<std::string>& fieldpaths) {
  ZSNAP_OVERLAY_RETURN_IF_ERROR(CheckWritable());
  ZSNAP_OVERLAY_ASSIGN_OR_RETURN(SnapshotRecord rec, GetInfo(info.name));
  Info updated = std::move(rec.info);
  if (fieldpaths.empty()) {
    updated.labels = info.labels;
  } else {
    for (const std::string& path : fieldpaths) {
      if (absl::StartsWith(path, "labels.")) {
        const std::string key = path.substr(absl::string_view("labels.").size());
        auto it = info.labels.find(key);
        // Absent in the request: the key is removed (an empty value, dropped below).
        updated.labels[key] = it == info.labels.end() ? "" : it->second;
      } else if (path == "labels") {
        updated.labels = info.labels;
      } else {
        return absl::InvalidArgumentError(
            absl::StrFormat("cannot update \"%s\" field on snapshot \"%s\"", path, info.name));
      }
    }
  }
  updated.labels = DropEmptyLabels(std::move(updated.labels));
  const int64_t now = NowNanos();
  updated.updated = absl::FromUnixNanos(now);
  {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(sqlite::Stmt touch, db_->Prepare(kTouch));
    ZSNAP_OVERLAY_RETURN_IF_ERROR(touch.Bind(1, rec.id).Bind(2, now).Run());
  }
  ZSNAP_OVERLAY_RETURN_IF_ERROR(WriteLabels(rec.id, updated.labels));
  return updated;
}

absl::StatusOr<std::vector<Info>> StoreTx::ListAll() {
  absl::flat_hash_map<int64_t, Labels> labels;
  {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(sqlite::Stmt stmt, db_->Prepare(kAllLabels));
    while (true) {
      ZSNAP_OVERLAY_ASSIGN_OR_RETURN(bool row, stmt.Step());
      if (!row) break;
      labels[stmt.Int(0)].emplace(stmt.Text(1), stmt.Text(2));
    }
  }
  ZSNAP_OVERLAY_ASSIGN_OR_RETURN(sqlite::Stmt stmt, db_->Prepare(kListAll));
  std::vector<Info> infos;
  while (true) {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) return infos;
    Info info;
    const int64_t id = stmt.Int(0);
    info.name = stmt.Text(1);
    info.kind = KindFromInt(stmt.Int(2));
    info.parent = stmt.IsNull(3) ? "" : stmt.Text(3);
    info.created = absl::FromUnixNanos(stmt.Int(4));
    info.updated = absl::FromUnixNanos(stmt.Int(5));
    if (auto it = labels.find(id); it != labels.end()) info.labels = std::move(it->second);
    infos.push_back(std::move(info));
  }
}

absl::StatusOr<absl::flat_hash_set<int64_t>> StoreTx::Ids() {
  ZSNAP_OVERLAY_ASSIGN_OR_RETURN(sqlite::Stmt stmt, db_->Prepare(kIds));
  absl::flat_hash_set<int64_t> ids;
  while (true) {
    ZSNAP_OVERLAY_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) return ids;
    ids.insert(stmt.Int(0));
  }
}

}  // namespace zsnap::overlay
