#include "store/sqlite.h"

#include <filesystem>
#include <memory>

namespace yard::sql {

namespace {
constexpr size_t kMaxCached = 256;
}  // namespace

Status SqliteError(sqlite3* db, const std::string& what) {
  int code = sqlite3_errcode(db);
  Code c = (code == SQLITE_BUSY || code == SQLITE_LOCKED) ? Code::kUnavailable : Code::kInternal;
  if (code == SQLITE_FULL) {
    // Which disk and what to do, not only SQLite's "database or disk is full".
    const char* file = sqlite3_db_filename(db, "main");
    std::string where =
        file && *file ? std::filesystem::path(file).parent_path().string() : "the store's folder";
    return Status(Code::kInsufficientStorage,
                  what + ": " + sqlite3_errmsg(db) + ": the disk holding " + where +
                      " is full; this change was not stored (nothing stored before is lost). "
                      "Free space there (`df -h " +
                      where + "` shows it); the server serves again once there is room");
  }
  return Status(c, what + ": " + sqlite3_errmsg(db));
}

bool IsWriteFailure(int code) {
  switch (code & 0xff) {  // the primary code of an extended one
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_NOMEM:
    case SQLITE_PROTOCOL:
      return true;
    default:
      return false;
  }
}

Stmt::~Stmt() {
  if (!stmt_) return;
  if (!in_use_) {
    sqlite3_finalize(stmt_);
    return;
  }
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  *in_use_ = false;
}

Stmt& Stmt::Bind(int i, std::string_view v) {
  sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}
Stmt& Stmt::Bind(int i, int64_t v) {
  sqlite3_bind_int64(stmt_, i, v);
  return *this;
}
Stmt& Stmt::Bind(int i, double v) {
  sqlite3_bind_double(stmt_, i, v);
  return *this;
}
Stmt& Stmt::BindNull(int i) {
  sqlite3_bind_null(stmt_, i);
  return *this;
}
Stmt& Stmt::BindBlob(int i, std::string_view v) {
  sqlite3_bind_blob64(stmt_, i, v.data(), v.size(), SQLITE_TRANSIENT);
  return *this;
}

StatusOr<bool> Stmt::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  Status error = SqliteError(db_, "sqlite step");
  if (failures_ && IsWriteFailure(rc)) *failures_ = {failures_->count + 1, error};
  return error;
}

Status Stmt::Run() {
  for (;;) {
    YARD_ASSIGN_OR_RETURN(bool row, Step());
    if (!row) return Status::Ok();
  }
}

std::string Stmt::Text(int col) const {
  const unsigned char* p = sqlite3_column_text(stmt_, col);
  if (!p) return "";
  return std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(stmt_, col));
}

std::string Stmt::Bytes(int col) const {
  const void* p = sqlite3_column_blob(stmt_, col);
  if (!p) return "";
  return std::string(static_cast<const char*>(p), sqlite3_column_bytes(stmt_, col));
}

StatusOr<std::unique_ptr<Db>> Db::Open(const std::string& path) {
  sqlite3* raw = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  std::unique_ptr<Db> db(new Db(raw));
  if (rc != SQLITE_OK) return SqliteError(raw, "opening database " + path);
  sqlite3_busy_timeout(raw, 5000);
  return db;
}

Db::~Db() {
  for (auto& [sql, cached] : cache_) sqlite3_finalize(cached.stmt);
  sqlite3_close_v2(db_);
}

StatusOr<Stmt> Db::Prepare(std::string_view sql) {
  if (!poisoned_.ok()) return poisoned_;
  auto it = cache_.find(std::string(sql));
  if (it != cache_.end() && !it->second.in_use) {
    it->second.in_use = true;
    return Stmt(db_, it->second.stmt, &it->second.in_use, &write_failures_);
  }
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr) !=
      SQLITE_OK)
    return SqliteError(db_, "preparing '" + std::string(sql.substr(0, 60)) + "'");
  // The cached one is busy, or the text is one of too many (made up at run
  // time, not one of the store's few).
  if (it != cache_.end() || cache_.size() >= kMaxCached)
    return Stmt(db_, stmt, nullptr, &write_failures_);
  Cached& slot = cache_[std::string(sql)];
  slot = {stmt, true};
  return Stmt(db_, stmt, &slot.in_use, &write_failures_);
}

Status Db::Exec(const std::string& sql) {
  if (!poisoned_.ok()) return poisoned_;
  char* err = nullptr;
  if (int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err); rc != SQLITE_OK) {
    std::string msg = err ? err : "unknown";
    sqlite3_free(err);
    Status error = sqlite3_errcode(db_) == SQLITE_FULL ? SqliteError(db_, "sqlite")
                                                       : Internal("sqlite: " + msg);
    if (IsWriteFailure(rc)) write_failures_ = {write_failures_.count + 1, error};
    return error;
  }
  return Status::Ok();
}

}  // namespace yard::sql
