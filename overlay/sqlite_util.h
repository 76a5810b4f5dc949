// Thin RAII helpers over the SQLite C API for the metadata store: a connection that caches
// prepared statements, a statement handle that binds by position and resets itself, and the
// mapping of SQLite result codes to absl::Status.
//
// Not thread-safe: a Connection and its statements belong to whoever holds the store's lock.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

struct sqlite3;
struct sqlite3_stmt;

namespace zsnap::overlay::sqlite {

// A status for SQLite result code `rc` while doing `what`, with the connection's message.
absl::Status Error(sqlite3* db, int rc, absl::string_view what);

// One step of a prepared statement; resets and clears bindings when destroyed, so the cached
// statement is ready for the next user.
class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  ~Stmt();
  Stmt(Stmt&& other) noexcept
      : db_(other.db_),
        stmt_(std::exchange(other.stmt_, nullptr)),
        bind_error_(other.bind_error_) {}
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt& operator=(Stmt&&) = delete;

  // Positions start at 1, as in SQL's ?1.
  Stmt& Bind(int pos, absl::string_view text);
  Stmt& Bind(int pos, int64_t value);
  Stmt& BindNull(int pos);

  // true: a row is available; false: done.
  absl::StatusOr<bool> Step();
  // Runs to completion, ignoring rows.
  absl::Status Run();

  int64_t Int(int col) const;
  std::string Text(int col) const;
  bool IsNull(int col) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
  absl::Status bind_error_;
};

class Connection {
 public:
  // Opens (creating if missing) the database file at `path`.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const std::string& path);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs one or more statements without results (pragmas, DDL, BEGIN/COMMIT).
  absl::Status Exec(const char* sql);
  // A cached prepared statement for `sql`. `sql` must outlive the connection (a literal).
  absl::StatusOr<Stmt> Prepare(const char* sql);
  int64_t LastInsertRowid() const;
  sqlite3* raw() const { return db_; }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}

  sqlite3* db_;
  absl::flat_hash_map<const char*, sqlite3_stmt*> cache_;
};

}  // namespace zsnap::overlay::sqlite
