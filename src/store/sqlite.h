// A thin RAII layer over the SQLite C API: a connection and prepared
// statements with typed binds. Errors come back as Status.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/status.h"

namespace yard::sql {

// Statements that failed because the database could not be written (a full
// disk, an I/O error, a read-only or damaged file; not constraint or usage
// errors): how many, and the last one's error.
struct WriteFailures {
  uint64_t count = 0;
  Status last;
};

// A prepared statement in use. Either owned (finalized on destruction) or
// borrowed from its Db's cache (`in_use` set): then destruction resets it,
// clears its bindings and hands it back.
class Stmt {
 public:
  // `failures`, when given, counts the steps that failed because the
  // database could not be written.
  Stmt(sqlite3* db, sqlite3_stmt* stmt, bool* in_use = nullptr, WriteFailures* failures = nullptr)
      : db_(db), stmt_(stmt), in_use_(in_use), failures_(failures) {}
  Stmt(Stmt&& o) noexcept : db_(o.db_), stmt_(o.stmt_), in_use_(o.in_use_), failures_(o.failures_) {
    o.stmt_ = nullptr;
  }
  Stmt(const Stmt&) = delete;
  ~Stmt();

  // Binds are 1-based, as in SQLite. They return *this for chaining.
  Stmt& Bind(int i, std::string_view v);
  Stmt& Bind(int i, int64_t v);
  Stmt& Bind(int i, double v);
  Stmt& BindNull(int i);
  // Binds bytes as a BLOB (SQLite keeps them exactly; no text encoding).
  Stmt& BindBlob(int i, std::string_view v);
  Stmt& Bind(int i, const std::optional<int64_t>& v) { return v ? Bind(i, *v) : BindNull(i); }

  // Steps once. Returns true if a row is available, false when done.
  StatusOr<bool> Step();
  // Steps to completion (for statements without rows).
  Status Run();
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  std::string Text(int col) const;
  // The column's bytes, BLOB or text, exactly as stored.
  std::string Bytes(int col) const;
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  double Double(int col) const { return sqlite3_column_double(stmt_, col); }
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
  bool* in_use_;  // the cache slot's flag, or null when owned
  WriteFailures* failures_;
};

// Not thread-safe: the caller serializes all use (Store holds a mutex).
class Db {
 public:
  static StatusOr<std::unique_ptr<Db>> Open(const std::string& path);
  ~Db();
  // A statement for `sql`, prepared once per connection and reused: the hot
  // paths run the same few statements for every event and transition. A
  // statement already in use (the same text prepared again before the first
  // one is destroyed) gets a fresh, owned copy.
  StatusOr<Stmt> Prepare(std::string_view sql);
  // Runs one or more statements without results.
  Status Exec(const std::string& sql);
  sqlite3* raw() { return db_; }
  // The statements (of Prepare or Exec) that failed because the database
  // could not be written. A transaction compares the count before and
  // after to know whether every write of it happened.
  const WriteFailures& write_failures() const { return write_failures_; }
  // From now on every Prepare and Exec fails with `why` (not ok): nothing is
  // read or written any more.
  void Poison(Status why) { poisoned_ = std::move(why); }

 private:
  struct Cached {
    sqlite3_stmt* stmt = nullptr;
    bool in_use = false;
  };
  explicit Db(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  WriteFailures write_failures_;
  Status poisoned_;
  // Node-based, so a slot's address (held by a borrowing Stmt) is stable.
  std::unordered_map<std::string, Cached> cache_;
};

// Status for the connection's last error.
Status SqliteError(sqlite3* db, const std::string& what);
// True for result codes that mean the database could not be written.
bool IsWriteFailure(int code);

}  // namespace yard::sql
