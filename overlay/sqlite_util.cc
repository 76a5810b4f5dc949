#include "overlay/sqlite_util.h"

#include <sqlite3.h>

#include "absl/strings/str_cat.h"

namespace zsnap::overlay::sqlite {

absl::Status Error(sqlite3* db, int rc, absl::string_view what) {
  const char* msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  const std::string text = absl::StrCat("metadata store: ", what, ": ", msg, " (", rc, ")");
  switch (rc & 0xFF) {  // the primary result code
    case SQLITE_FULL:
      return absl::ResourceExhaustedError(text);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(text);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(text);
    case SQLITE_CONSTRAINT:
      return absl::AlreadyExistsError(text);
    default:
      return absl::InternalError(text);
  }
}

Stmt::~Stmt() {
  if (stmt_ == nullptr) return;  // moved from
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

Stmt& Stmt::Bind(int pos, absl::string_view text) {
  const int rc =
      sqlite3_bind_text(stmt_, pos, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK && bind_error_.ok()) bind_error_ = Error(db_, rc, "bind");
  return *this;
}

Stmt& Stmt::Bind(int pos, int64_t value) {
  const int rc = sqlite3_bind_int64(stmt_, pos, value);
  if (rc != SQLITE_OK && bind_error_.ok()) bind_error_ = Error(db_, rc, "bind");
  return *this;
}

Stmt& Stmt::BindNull(int pos) {
  const int rc = sqlite3_bind_null(stmt_, pos);
  if (rc != SQLITE_OK && bind_error_.ok()) bind_error_ = Error(db_, rc, "bind");
  return *this;
}

absl::StatusOr<bool> Stmt::Step() {
  if (!bind_error_.ok()) return bind_error_;
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return Error(db_, rc, sqlite3_sql(stmt_));
}

absl::Status Stmt::Run() {
  while (true) {
    absl::StatusOr<bool> row = Step();
    if (!row.ok()) return row.status();
    if (!*row) return absl::OkStatus();
  }
}

int64_t Stmt::Int(int col) const { return sqlite3_column_int64(stmt_, col); }

std::string Stmt::Text(int col) const {
  const auto* data = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
  const int size = sqlite3_column_bytes(stmt_, col);
  return data == nullptr ? std::string() : std::string(data, static_cast<size_t>(size));
}

bool Stmt::IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(const std::string& path) {
  sqlite3* db = nullptr;
  // The store serialises all use of the connection itself, so SQLite's own mutex is not needed.
  const int rc = sqlite3_open_v2(
      path.c_str(), &db,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
      nullptr);
  if (rc != SQLITE_OK) {
    absl::Status s = Error(db, rc, absl::StrCat("open ", path));
    sqlite3_close_v2(db);
    return s;
  }
  return std::unique_ptr<Connection>(new Connection(db));
}

Connection::~Connection() {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  sqlite3_close_v2(db_);
}

absl::Status Connection::Exec(const char* sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    absl::Status s = Error(db_, rc, sql);
    sqlite3_free(err);
    return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<Stmt> Connection::Prepare(const char* sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) return Error(db_, rc, absl::StrCat("prepare ", sql));
    it = cache_.emplace(sql, stmt).first;
  }
  return Stmt(db_, it->second);
}

int64_t Connection::LastInsertRowid() const { return sqlite3_last_insert_rowid(db_); }

}  // namespace zsnap::overlay::sqlite
