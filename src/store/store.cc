#include "store/store.h"

#include <cstdio>

#include "common/hashing.h"

namespace yard {
namespace {

// Numbered migrations. Entry i moves the schema from version i to i + 1.
// Never edit a released entry: add a new one. Documented in docs/store.md.
const char* const kMigrations[] = {
    // 0 -> 1: the foundation.
    R"sql(
CREATE TABLE tokens (hash TEXT PRIMARY KEY, user TEXT NOT NULL, kind TEXT NOT NULL,
                     created_at REAL NOT NULL);
CREATE TABLE jobs (id TEXT PRIMARY KEY, user TEXT NOT NULL, state TEXT NOT NULL,
                   spec TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',
                   instance_id TEXT NOT NULL DEFAULT '', machine_type TEXT NOT NULL DEFAULT '',
                   created_at REAL NOT NULL, updated_at REAL NOT NULL, exit_code INTEGER,
                   message TEXT NOT NULL DEFAULT '', last_seq INTEGER NOT NULL DEFAULT 0,
                   attempt INTEGER NOT NULL DEFAULT 0, run_acked INTEGER NOT NULL DEFAULT 0,
                   cancel_requested INTEGER NOT NULL DEFAULT 0);
CREATE INDEX jobs_by_user ON jobs(user, created_at);
CREATE INDEX jobs_by_state ON jobs(state);
CREATE TABLE events (job_id TEXT NOT NULL, seq INTEGER NOT NULL, time REAL NOT NULL,
                     kind TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (job_id, seq))
                     WITHOUT ROWID;
CREATE TABLE artifacts (job_id TEXT NOT NULL, dir TEXT NOT NULL, path TEXT NOT NULL,
                        entry TEXT NOT NULL, seq INTEGER NOT NULL,
                        PRIMARY KEY (job_id, dir, path)) WITHOUT ROWID;
CREATE TABLE blob_owners (hash TEXT NOT NULL, user TEXT NOT NULL, PRIMARY KEY (user, hash))
                          WITHOUT ROWID;
CREATE TABLE instances (id TEXT PRIMARY KEY, machine_type TEXT NOT NULL, provider TEXT NOT NULL,
                        state TEXT NOT NULL, user TEXT NOT NULL DEFAULT '',
                        job_id TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL,
                        state_since REAL NOT NULL, last_heartbeat REAL NOT NULL DEFAULT 0,
                        cool_until REAL NOT NULL DEFAULT 0, info TEXT NOT NULL DEFAULT '{}');
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
)sql",
    // 1 -> 2: scheduling state per job (fallback cursor, restarts, quota
    // wait) and the price ledger.
    R"sql(
ALTER TABLE jobs ADD COLUMN sched TEXT NOT NULL DEFAULT '{}';
CREATE TABLE ledger (id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL,
                     user TEXT NOT NULL, job_id TEXT NOT NULL DEFAULT '', kind TEXT NOT NULL,
                     machine_type TEXT NOT NULL, market TEXT NOT NULL, start REAL NOT NULL,
                     end REAL NOT NULL, cost REAL NOT NULL);
CREATE INDEX ledger_by_user ON ledger(user, start);
)sql",
    // 2 -> 3: output bytes apart from the event's JSON, exactly as written
    // (an output event's body then has no "data").
    R"sql(
ALTER TABLE events ADD COLUMN data BLOB;
)sql",
    // 3 -> 4: per-instance agent credentials (SHA-256 of the single-use
    // bootstrap and of the instance's own credential); the shared agent
    // tokens of earlier versions open nothing any more.
    R"sql(
ALTER TABLE instances ADD COLUMN bootstrap_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN credential_hash TEXT NOT NULL DEFAULT '';
DELETE FROM tokens WHERE kind = 'agent';
)sql",
    // 4 -> 5: token lifecycle. Tokens of earlier versions keep what they
    // could do: user tokens get the full scope, none expires.
    R"sql(
ALTER TABLE tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE tokens ADD COLUMN expires_at REAL NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN last_used REAL NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN revoked_at REAL NOT NULL DEFAULT 0;
UPDATE tokens SET scope = 'metrics' WHERE kind = 'metrics';
)sql",
    // 5 -> 6: output bytes in the job's output log (store/output_log.h),
    // named by offset and length, instead of in `data`.
    R"sql(
ALTER TABLE events ADD COLUMN out_off INTEGER;
ALTER TABLE events ADD COLUMN out_len INTEGER;
)sql",
};
constexpr int kSchemaVersion = sizeof(kMigrations) / sizeof(kMigrations[0]);

Json ParseJsonColumn(const std::string& text) {
  Json j = Json::parse(text, nullptr, false);
  return j.is_discarded() ? Json::object() : j;
}

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

constexpr const char* kJobColumns =
    "id, user, state, spec, description, instance_id, machine_type, created_at, updated_at, "
    "exit_code, message, last_seq, attempt, run_acked, cancel_requested, sched";

JobRecord ReadJob(const sql::Stmt& s) {
  JobRecord j;
  j.id = s.Text(0);
  j.user = s.Text(1);
  j.state = s.Text(2);
  j.spec = ParseJsonColumn(s.Text(3));
  j.description = s.Text(4);
  j.instance_id = s.Text(5);
  j.machine_type = s.Text(6);
  j.created_at = s.Double(7);
  j.updated_at = s.Double(8);
  if (!s.IsNull(9)) j.exit_code = s.Int(9);
  j.message = s.Text(10);
  j.last_seq = s.Int(11);
  j.attempt = s.Int(12);
  j.run_acked = s.Int(13);
  j.cancel_requested = s.Int(14) != 0;
  j.sched = JobSchedule::FromJson(ParseJsonColumn(s.Text(15)));
  return j;
}

constexpr const char* kInstanceColumns =
    "id, machine_type, provider, state, user, job_id, created_at, state_since, last_heartbeat, "
    "cool_until, info, bootstrap_hash, credential_hash";

InstanceRecord ReadInstance(const sql::Stmt& s) {
  InstanceRecord r;
  r.id = s.Text(0);
  r.machine_type = s.Text(1);
  r.provider = s.Text(2);
  r.state = s.Text(3);
  r.user = s.Text(4);
  r.job_id = s.Text(5);
  r.created_at = s.Double(6);
  r.state_since = s.Double(7);
  r.last_heartbeat = s.Double(8);
  r.cool_until = s.Double(9);
  r.info = ParseJsonColumn(s.Text(10));
  r.bootstrap_hash = s.Text(11);
  r.credential_hash = s.Text(12);
  return r;
}

}  // namespace

std::string NewId(const std::string& prefix) { return prefix + "-" + RandomHex(6); }

int Store::CurrentSchemaVersion() { return kSchemaVersion; }

StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& path) {
  YARD_ASSIGN_OR_RETURN(auto db, sql::Db::Open(path));
  // WAL: readers never block the writer; NORMAL sync is durable against a
  // killed process (the WAL is in the OS cache), which is the failure we
  // promise to survive; a power cut may lose the last commits.
  YARD_RETURN_IF_ERROR(db->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"));
  // 64 MiB of page cache (SQLite's default is 2 MiB): with ten thousand jobs
  // queued the jobs and events pages no longer fit in 2 MiB, and every
  // transition re-read them from the OS (bench_scheduler, bench/README.md).
  YARD_RETURN_IF_ERROR(db->Exec("PRAGMA cache_size=-65536;"));
  // A checkpoint every kWalCheckpointPages WAL pages instead of SQLite's 1000:
  // it runs inside the commit that crosses the mark, under the store's lock,
  // and ends in an fdatasync, so every agent's request waits for it. A job's
  // transitions write ~40 pages (the same hot index pages again and again), so
  // at 400 jobs/s the default checkpointed 16 times a second. Durability is
  // the WAL's either way: a checkpoint only moves committed pages into the
  // database file. The WAL then grows to kWalCheckpointPages × 4 KiB.
  YARD_RETURN_IF_ERROR(
      db->Exec("PRAGMA wal_autocheckpoint=" + std::to_string(kWalCheckpointPages) + ";"));
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  std::unique_ptr<Store> store(new Store(std::move(db), dir + "/output"));
  YARD_RETURN_IF_ERROR(store->Migrate());
  return store;
}

Status Store::Migrate() {
  Lock lock(*this);
  YARD_ASSIGN_OR_RETURN(auto st, db_->Prepare("PRAGMA user_version"));
  YARD_ASSIGN_OR_RETURN(bool row, st.Step());
  int version = row ? static_cast<int>(st.Int(0)) : 0;
  if (version > kSchemaVersion) {
    return FailedPrecondition("the database was written by a newer Trainyard (schema " +
                              std::to_string(version) + ", this build knows " +
                              std::to_string(kSchemaVersion) +
                              "): upgrade yard or point YARD_HOME elsewhere");
  }
  for (int v = version; v < kSchemaVersion; ++v) {
    Status s = TransactionLocked([&] {
      mu_.AssertHeld();  // run by TransactionLocked, on this thread
      YARD_RETURN_IF_ERROR(db_->Exec(kMigrations[v]));
      return db_->Exec("PRAGMA user_version=" + std::to_string(v + 1));
    });
    if (!s.ok()) return s.WithContext("migrating the store to version " + std::to_string(v + 1));
  }
  return Status::Ok();
}

// Conditional locking is beyond the analysis: the attributes in store.h
// state the contract (mu_ is held by this thread for the Lock's scope).
Store::Lock::Lock(Store& store) NO_THREAD_SAFETY_ANALYSIS
    : store_(store),
      joined_(store.transaction_thread_.load() == std::this_thread::get_id()) {
  if (!joined_) store_.mu_.lock();
}

Store::Lock::~Lock() NO_THREAD_SAFETY_ANALYSIS {
  if (!joined_) store_.mu_.unlock();
}

Status Store::Transaction(const std::function<Status()>& fn) {
  Lock lock(*this);
  // Marks this thread for `fn`'s calls; put back even if `fn` throws, and a
  // Transaction inside another's `fn` keeps the outer one's mark.
  struct Mark {
    std::atomic<std::thread::id>& thread;
    std::thread::id outer = thread.exchange(std::this_thread::get_id());
    ~Mark() { thread.store(outer); }
  } mark{transaction_thread_};
  return TransactionLocked(fn);
}

Status Store::TransactionLocked(const std::function<Status()>& fn) {
  if (!sqlite3_get_autocommit(db_->raw())) return fn();  // nested: join the outer one
  YARD_RETURN_IF_ERROR(RunCached("BEGIN IMMEDIATE"));
  uint64_t failures = db_->write_failures().count;
  Status s;
  try {
    s = fn();
  } catch (...) {
    // Left open, every later write would join this transaction and none
    // would ever be committed.
    (void)RunCached("ROLLBACK");
    throw;
  }
  // A write that failed inside (its caller may have only logged it) fails
  // the whole transaction: all of it is stored, or none.
  if (s.ok() && db_->write_failures().count != failures) s = db_->write_failures().last;
  if (s.ok()) s = RunCached("COMMIT");
  // SQLite may have rolled back already (a full disk, an I/O error); if it
  // has not, a failed COMMIT leaves the transaction open, and every later
  // one would join it and never be stored.
  if (!s.ok() && !sqlite3_get_autocommit(db_->raw())) (void)RunCached("ROLLBACK");
  return s;
}

void Store::Poison(Status why) {
  Lock lock(*this);
  db_->Poison(std::move(why));
}

Status Store::SetMaxPagesForTesting(int64_t pages) {
  Lock lock(*this);
  return db_->Exec("PRAGMA max_page_count = " + std::to_string(pages > 0 ? pages : 1073741823));
}

Status Store::RunCached(const char* sql) {
  YARD_ASSIGN_OR_RETURN(auto st, db_->Prepare(sql));
  return st.Run();
}

StatusOr<std::string> Store::CreateToken(const std::string& user, const std::string& scope,
                                         double expires_at) {
  if (scope != "read" && scope != "submit" && scope != "admin" && scope != "metrics")
    return InvalidArgument(
        "unknown token scope '" + scope +
        "': read, submit, admin or metrics (each "
        "instance gets its own agent credential at launch: docs/api.md, \"Agent credentials\")");
  if (user.empty()) return InvalidArgument("a token needs a user name");
  Lock lock(*this);
  std::string token = "yut_" + RandomHex(24);
  YARD_ASSIGN_OR_RETURN(
      auto st, db_->Prepare("INSERT INTO tokens(hash, user, kind, scope, expires_at, created_at) "
                            "VALUES(?, ?, ?, ?, ?, strftime('%s','now'))"));
  st.Bind(1, Sha256Hex(token)).Bind(2, user).Bind(3, scope == "metrics" ? "metrics" : "user");
  YARD_RETURN_IF_ERROR(st.Bind(4, scope).Bind(5, expires_at).Run());
  return token;
}

namespace {
constexpr const char* kTokenColumns =
    "hash, user, kind, scope, created_at, expires_at, last_used, revoked_at";

TokenRecord ReadToken(const sql::Stmt& s) {
  TokenRecord t;
  t.hash = s.Text(0);
  t.id = TokenIdOfHash(t.hash);
  t.user = s.Text(1);
  t.kind = s.Text(2);
  t.scope = s.Text(3);
  t.created_at = s.Double(4);
  t.expires_at = s.Double(5);
  t.last_used = s.Double(6);
  t.revoked_at = s.Double(7);
  return t;
}
}  // namespace

std::string TokenIdOfHash(const std::string& hash) { return hash.substr(0, 12); }

StatusOr<TokenRecord> Store::FindTokenByHash(const std::string& hash) {
  Lock lock(*this);
  YARD_ASSIGN_OR_RETURN(auto st, db_->Prepare(std::string("SELECT ") + kTokenColumns +
                                              " FROM tokens WHERE hash = ?"));
  st.Bind(1, hash);
  YARD_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row)
    return Unauthenticated(
        "unknown token: ask the server's operator for one (`yard token create USER`)");
  return ReadToken(st);
}

StatusOr<TokenRecord> Store::FindToken(const std::string& plaintext) {
  return FindTokenByHash(Sha256Hex(plaintext));
}

StatusOr<std::vector<TokenRecord>> Store::ListTokens(const std::string& user) {
  Lock lock(*this);
  YARD_ASSIGN_OR_RETURN(
      auto st,
      db_->Prepare(std::string("SELECT ") + kTokenColumns +
                   " FROM tokens WHERE (? = '' OR user = ?) AND kind IN ('user', 'metrics') "
                   "ORDER BY user, created_at, hash"));
  st.Bind(1, user).Bind(2, user);
  std::vector<TokenRecord> out;
  for (;;) {
    YARD_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ReadToken(st));
  }
  return out;
}

StatusOr<TokenRecord> Store::RevokeToken(const std::string& id, const std::string& user,
                                         double now) {
  Lock lock(*this);
  StatusOr<TokenRecord> found = NotFound("");
  YARD_RETURN_IF_ERROR(TransactionLocked([&]() -> Status {
    mu_.AssertHeld();  // run by TransactionLocked, on this thread
    YARD_ASSIGN_OR_RETURN(
        auto st, db_->Prepare(std::string("SELECT ") + kTokenColumns +
                              " FROM tokens WHERE substr(hash, 1, 12) = ? AND (? = '' OR user = ?) "
                              "AND kind IN ('user', 'metrics')"));
    st.Bind(1, id).Bind(2, user).Bind(3, user);
    YARD_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row)
      return NotFound("no token with id '" + id + "'" + (user.empty() ? "" : " of user " + user) +
                      ": `yard token list` shows the ids");
    found = ReadToken(st);
    if (found->revoked_at > 0) return Status::Ok();  // revoking twice changes nothing
    YARD_ASSIGN_OR_RETURN(auto up, db_->Prepare("UPDATE tokens SET revoked_at = ? WHERE hash = ?"));
    YARD_RETURN_IF_ERROR(up.Bind(1, now).Bind(2, found->hash).Run());
    found->revoked_at = now;
    return Status::Ok();
  }));
  return found;
}

Status Store::RecordTokenUse(const std::string& hash, double when) {
  Lock lock(*this);
  YARD_ASSIGN_OR_RETURN(
      auto st, db_->Prepare("UPDATE tokens SET last_used = max(last_used, ?) WHERE hash = ?"));
  return st.Bind(1, when).Bind(2, hash).Run();
}

Status Store::InsertJob(const JobRecord& j) {
  Lock lock(*this);
  YARD_ASSIGN_OR_RETURN(auto st, db_->Prepare(std::string("INSERT INTO jobs(") + kJobColumns +
                                              ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"));
  st.Bind(1, j.id)
      .Bind(2, j.user)
      .Bind(3, j.state)
      .Bind(4, Dump(j.spec))
      .Bind(5, j.description)
      .Bind(6, j.instance_id)
      .Bind(7, j.machine_type)
      .Bind(8, j.created_at)
      .Bind(9, j.updated_at)
      .Bind(10, j.exit_code)
      .Bind(11, j.message)
      .Bind(12, j.last_seq)
      .Bind(13, j.attempt)
      .Bind(14, j.run_acked)
      .Bind(15, static_cast<int64_t>(j.cancel_requested))
      .Bind(16, Dump(j.sched.ToJson()));
  return st.Run();
}

StatusOr<JobRecord> Store::GetJob(const std::string& id) {
  Lock lock(*this);
  YARD_ASSIGN_OR_RETURN(
      auto st, db_->Prepare(std::string("SELECT ") + kJobColumns + " FROM jobs WHERE id = ?"));
  st.Bind(1, id);
  YARD_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return NotFound("no job '" + id + "': list yours with `yard jobs`");
  return ReadJob(st);
}

StatusOr<std::vector<JobRecord>> Store::ListJobs(const std::string& user, const std::string& state,
                                                 const std::string& query, int limit) {
  Lock lock(*this);
  YARD_ASSIGN_OR_RETURN(auto st,
                        db_->Prepare(std::string("SELECT ") + kJobColumns +
                                     " FROM jobs WHERE user = ?1 AND (?2 = '' OR state = ?2) AND"
                                     " (?3 = '' OR instr(lower(description), lower(?3)) > 0)"
                                     " ORDER BY created_at DESC, id DESC LIMIT ?4"));
  st.Bind(1, user).Bind(2, state).Bind(3, query).Bind(4, static_cast<int64_t>(limit));
  std::vector<JobRecord> out;
  for (;;) {
    YARD_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ReadJob(st));
  }
  return out;
}

StatusOr<std::vector<JobRecord>> Store::JobsInStates(const std::vector<std::string>& states) {
  Lock lock(*this);
  std::vector<JobRecord> out;
  for (const auto& state : states) {
    YARD_ASSIGN_OR_RETURN(auto st, db_->Prepare(std::string("SELECT ") + kJobColumns +
                                                " FROM jobs WHERE state = ? ORDER BY created_at"));
    st.Bind(1, state);
    for (;;) {
      YARD_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      out.push_back(ReadJob(st));
    }
  }
  return out;
}

StatusOr<std::vector<Store::JobStateCount>> Store::CountJobsByState() {
  Lock lock(*this);
  YARD_ASSIGN_OR_RETURN(
      auto st,
      db_->Prepare("SELECT state, count(*), coalesce(sum(last_seq), 0) FROM jobs GROUP BY state"));
  std::vector<JobStateCount> out;
  for (;;) {
    YARD_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back({st.Text(0), st.Int(1), st.Int(2)});
  }
  return out;
}

Status Store::UpdateJob(const JobRecord& j) {
  Lock lock(*this);
  return UpdateJobLocked(j);
}

Status Store::UpdateJobLocked(const JobRecord& j) {
  YARD_ASSIGN_OR_RETURN(
      auto st,
      db_->Prepare(
          "UPDATE jobs SET state=?, instance_id=?, machine_type=?, updated_at=?, exit_code=?, "
          "message=?, attempt=?, run_acked=?, cancel_requested=?, sched=? WHERE id=?"));
  st.Bind(1, j.state)
      .Bind(2, j.instance_id)
      .Bind(3, j.machine_type)
      .Bind(4, j.updated_at)
      .Bind(5, j.exit_code)
      .Bind(6, j.message)
      .Bind(7, j.attempt)
      .Bind(8, j.run_acked)
      .Bind(9, static_cast<int64_t>(j.cancel_requested))
      .Bind(10, Dump(j.sched.ToJson()))
      .Bind(11, j.id);
  return st.Run();
}

StatusOr<std::vector<EventRecord>> Store::AppendEvents(const std::string& job_id,
                                                       std::vector<Json> events, double now,
                                                       const JobRecord* job_update) {
  return AppendEventsWithOutput(job_id,
                                std::vector<NewEvent>(std::make_move_iterator(events.begin()),
                                                      std::make_move_iterator(events.end())),
                                now, job_update);
}

StatusOr<uint64_t> Store::OutputEndLocked(const std::string& job_id) {
  auto it = output_end_.find(job_id);
  if (it != output_end_.end()) return it->second;
  YARD_ASSIGN_OR_RETURN(
      auto q,
      db_->Prepare("SELECT out_off + out_len FROM events WHERE job_id = ? AND out_len IS NOT NULL "
                   "ORDER BY seq DESC LIMIT 1"));
  q.Bind(1, job_id);
  YARD_ASSIGN_OR_RETURN(bool row, q.Step());
  uint64_t end = row ? static_cast<uint64_t>(q.Int(0)) : 0;
  output_end_[job_id] = end;
  return end;
}

StatusOr<std::vector<EventRecord>> Store::AppendEventsWithOutput(const std::string& job_id,
                                                                 std::vector<NewEvent> events,
                                                                 double now,
                                                                 const JobRecord* job_update) {
  Lock lock(*this);
  std::vector<EventRecord> stored;
  Status s = TransactionLocked([&]() -> Status {
    mu_.AssertHeld();  // run by TransactionLocked, on this thread
    YARD_ASSIGN_OR_RETURN(auto q, db_->Prepare("SELECT last_seq FROM jobs WHERE id = ?"));
    q.Bind(1, job_id);
    YARD_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) return NotFound("no job '" + job_id + "'");
    int64_t seq = q.Int(0);
    // The batch's output bytes go to the job's log in one write, before the
    // rows that name them; the end moves on even if this transaction rolls
    // back (a gap in the file is harmless, an overwrite of stored bytes not).
    std::vector<std::string_view> pieces;
    for (const NewEvent& e : events)
      if (e.output) pieces.push_back(*e.output);
    uint64_t at = 0;
    if (!pieces.empty()) {
      YARD_ASSIGN_OR_RETURN(at, OutputEndLocked(job_id));
      YARD_RETURN_IF_ERROR(output_log_.Write(job_id, at, pieces));
      for (std::string_view p : pieces) output_end_[job_id] += p.size();
    }
    YARD_ASSIGN_OR_RETURN(
        auto ins,
        db_->Prepare("INSERT INTO events(job_id, seq, time, kind, body, out_off, out_len) "
                     "VALUES(?,?,?,?,?,?,?)"));
    for (NewEvent& e : events) {
      EventRecord r{++seq, now, e.body.value("kind", "unknown"), std::move(e.body)};
      r.body["seq"] = r.seq;
      r.body["time"] = r.time;
      ins.Bind(1, job_id).Bind(2, r.seq).Bind(3, r.time).Bind(4, r.kind).Bind(5, Dump(r.body));
      if (e.output) {
        ins.Bind(6, static_cast<int64_t>(at)).Bind(7, static_cast<int64_t>(e.output->size()));
        at += e.output->size();
      }
      YARD_RETURN_IF_ERROR(ins.Run());
      ins.Reset();
      stored.push_back(std::move(r));
    }
    YARD_ASSIGN_OR_RETURN(auto upd, db_->Prepare("UPDATE jobs SET last_seq = ? WHERE id = ?"));
    YARD_RETURN_IF_ERROR(upd.Bind(1, seq).Bind(2, job_id).Run());
    if (job_update) YARD_RETURN_IF_ERROR(UpdateJobLocked(*job_update));
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return stored;
}

// An output event's bytes: in `data` (schema 3 to 5) or in the job's output
// log (`out_off`, `out_len` at columns `col` and `col + 1`; schema 6). A log
// that ends early (a power cut) yields what is there, said on stderr.
std::optional<std::string> Store::OutputBytesLocked(const sql::Stmt& st, int data_col, int off_col,
                                                    const std::string& job_id,
                                                    std::optional<OutputLog::Reader>* reader) {
  if (!st.IsNull(data_col)) return st.Bytes(data_col);
  if (st.IsNull(off_col + 1)) return std::nullopt;
  std::string out;
  if (!*reader) {
    StatusOr<OutputLog::Reader> r = output_log_.Open(job_id);
    if (!r.ok()) {
      std::fprintf(stderr, "yard server: %s\n", r.status().ToString().c_str());
      return out;
    }
    reader->emplace(std::move(*r));
  }
  Status s = (*reader)->Read(static_cast<uint64_t>(st.Int(off_col)),
                             static_cast<size_t>(st.Int(off_col + 1)), &out);
  if (!s.ok()) std::fprintf(stderr, "yard server: %s\n", s.ToString().c_str());
  return out;
}

StatusOr<std::vector<EventRecord>> Store::ReadEvents(const std::string& job_id, int64_t after,
                                                     int limit) {
  Lock lock(*this);
  YARD_ASSIGN_OR_RETURN(
      auto st,
      db_->Prepare(
          "SELECT seq, time, kind, body, data, out_off, out_len FROM events WHERE job_id = ? AND "
          "seq > ? ORDER BY seq LIMIT ?"));
  st.Bind(1, job_id).Bind(2, after).Bind(3, static_cast<int64_t>(limit));
  std::vector<EventRecord> out;
  std::optional<OutputLog::Reader> reader;
  for (;;) {
    YARD_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    EventRecord e{st.Int(0), st.Double(1), st.Text(2), ParseJsonColumn(st.Text(3))};
    if (auto bytes = OutputBytesLocked(st, 4, 5, job_id, &reader))
      e.body["data"] = std::move(*bytes);
    out.push_back(std::move(e));
  }
  return out;
}

StatusOr<std::vector<StoredEvent>> Store::ReadEventText(const std::string& job_id, int64_t after,
                                                        int limit, size_t max_bytes) {
  Lock lock(*this);
  YARD_ASSIGN_OR_RETURN(
      auto st,
      db_->Prepare(
          "SELECT seq, body, data, out_off, out_len FROM events WHERE job_id = ? AND seq > ? "
          "ORDER BY seq LIMIT ?"));
  st.Bind(1, job_id).Bind(2, after).Bind(3, static_cast<int64_t>(limit));
  std::vector<StoredEvent> out;
  std::optional<OutputLog::Reader> reader;
  size_t bytes = 0;
  while (bytes < max_bytes) {
    YARD_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    StoredEvent e{st.Int(0), st.Text(1), OutputBytesLocked(st, 2, 3, job_id, &reader)};
    bytes += e.json.size() + (e.output ? e.output->size() : 0);
    out.push_back(std::move(e));
  }
  return out;
}

StatusOr<StoredEvent> Store::LatestEventOfKind(const std::string& job_id, const std::string& kind,
                                               int64_t after) {
  Lock lock(*this);
  YARD_ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT seq, body FROM events WHERE job_id = ? AND "
                                              "seq > ? AND kind = ? ORDER BY seq DESC LIMIT 1"));
  st.Bind(1, job_id).Bind(2, after).Bind(3, kind);
  YARD_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return StoredEvent{};
  return StoredEvent{st.Int(0), st.Text(1), std::nullopt};
}

Status Store::UpsertArtifact(const std::string& job_id, const std::string& dir, const Json& entry,
                             int64_t seq) {
  Lock lock(*this);
  YARD_ASSIGN_OR_RETURN(
      auto st,
      db_->Prepare(
          "INSERT INTO artifacts(job_id, dir, path, entry, seq) VALUES(?,?,?,?,?) "
          "ON CONFLICT(job_id, dir, path) DO UPDATE SET entry=excluded.entry, seq=excluded.seq"));
  st.Bind(1, job_id)
      .Bind(2, dir)
      .Bind(3, entry.value("path", ""))
      .Bind(4, Dump(entry))
      .Bind(5, seq);
  return st.Run();
}

StatusOr<Json> Store::ListArtifacts(const std::string& job_id) {
  Lock lock(*this);
  YARD_ASSIGN_OR_RETURN(
      auto st,
      db_->Prepare("SELECT dir, entry, seq FROM artifacts WHERE job_id = ? ORDER BY dir, path"));
  st.Bind(1, job_id);
  Json out = Json::array();
  for (;;) {
    YARD_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(
        {{"dir", st.Text(0)}, {"entry", ParseJsonColumn(st.Text(1))}, {"seq", st.Int(2)}});
  }
  return out;
}

Status Store::AddBlobOwners(const std::string& user, const std::vector<std::string>& hashes) {
  Lock lock(*this);
  return TransactionLocked([&]() -> Status {
    mu_.AssertHeld();  // run by TransactionLocked, on this thread
    YARD_ASSIGN_OR_RETURN(
        auto st, db_->Prepare("INSERT OR IGNORE INTO blob_owners(hash, user) VALUES(?, ?)"));
    for (const auto& h : hashes) {
      YARD_RETURN_IF_ERROR(st.Bind(1, h).Bind(2, user).Run());
      st.Reset();
    }
    return Status::Ok();
  });
}

namespace {

// Adds every run of exactly 64 lower-case hex characters in `text`.
void AddHashes(std::string_view text, std::unordered_set<std::string>* out) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); };
  for (size_t i = 0; i < text.size();) {
    if (!hex(text[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < text.size() && hex(text[j])) ++j;
    if (j - i == 64) out->emplace(text.substr(i, 64));
    i = j;
  }
}

}  // namespace

StatusOr<std::unordered_set<std::string>> Store::ReferencedHashes() {
  std::string path;
  {
    Lock lock(*this);
    const char* file = sqlite3_db_filename(db_->raw(), "main");
    path = file ? file : "";
  }
  YARD_ASSIGN_OR_RETURN(std::unique_ptr<sql::Db> db, sql::Db::Open(path));
  // One read transaction: one snapshot across the tables.
  YARD_RETURN_IF_ERROR(db->Exec("BEGIN"));
  std::unordered_set<std::string> out;
  for (const char* sql : {"SELECT spec || sched FROM jobs", "SELECT entry FROM artifacts",
                          "SELECT body FROM events WHERE kind <> 'output'"}) {
    YARD_ASSIGN_OR_RETURN(auto st, db->Prepare(sql));
    for (;;) {
      YARD_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      AddHashes(st.Text(0), &out);
    }
  }
  (void)db->Exec("COMMIT");
  return out;
}

Status Store::RemoveBlobOwners(const std::vector<std::string>& hashes) {
  Lock lock(*this);
  // One pass over the table (it is keyed by user first).
  YARD_ASSIGN_OR_RETURN(
      auto st,
      db_->Prepare("DELETE FROM blob_owners WHERE hash IN (SELECT value FROM json_each(?))"));
  return st.Bind(1, Json(hashes).dump()).Run();
}

StatusOr<bool> Store::UserOwnsBlob(const std::string& user, const std::string& hash) {
  YARD_ASSIGN_OR_RETURN(auto owned, OwnedBlobs(user, {hash}));
  return !owned.empty();
}

StatusOr<std::vector<std::string>> Store::OwnedBlobs(const std::string& user,
                                                     const std::vector<std::string>& hashes) {
  Lock lock(*this);
  YARD_ASSIGN_OR_RETURN(auto st,
                        db_->Prepare("SELECT 1 FROM blob_owners WHERE user = ? AND hash = ?"));
  std::vector<std::string> out;
  for (const auto& h : hashes) {
    st.Bind(1, user).Bind(2, h);
    YARD_ASSIGN_OR_RETURN(bool row, st.Step());
    if (row) out.push_back(h);
    st.Reset();
  }
  return out;
}

Status Store::UpsertInstance(const InstanceRecord& r) {
  Lock lock(*this);
  YARD_ASSIGN_OR_RETURN(
      auto st, db_->Prepare(std::string("INSERT OR REPLACE INTO instances(") + kInstanceColumns +
                            ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)"));
  st.Bind(1, r.id)
      .Bind(2, r.machine_type)
      .Bind(3, r.provider)
      .Bind(4, r.state)
      .Bind(5, r.user)
      .Bind(6, r.job_id)
      .Bind(7, r.created_at)
      .Bind(8, r.state_since)
      .Bind(9, r.last_heartbeat)
      .Bind(10, r.cool_until)
      .Bind(11, Dump(r.info))
      .Bind(12, r.bootstrap_hash)
      .Bind(13, r.credential_hash);
  return st.Run();
}

StatusOr<InstanceRecord> Store::GetInstance(const std::string& id) {
  Lock lock(*this);
  YARD_ASSIGN_OR_RETURN(auto st, db_->Prepare(std::string("SELECT ") + kInstanceColumns +
                                              " FROM instances WHERE id = ?"));
  st.Bind(1, id);
  YARD_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return NotFound("no instance '" + id + "'");
  return ReadInstance(st);
}

StatusOr<std::vector<InstanceRecord>> Store::ListInstances(bool include_ended) {
  Lock lock(*this);
  YARD_ASSIGN_OR_RETURN(
      auto st,
      db_->Prepare(
          std::string("SELECT ") + kInstanceColumns +
          " FROM instances WHERE ?1 OR state NOT IN ('terminated', 'lost') ORDER BY created_at"));
  st.Bind(1, static_cast<int64_t>(include_ended));
  std::vector<InstanceRecord> out;
  for (;;) {
    YARD_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ReadInstance(st));
  }
  return out;
}

Status Store::AddLedgerEntry(const LedgerEntry& e) {
  Lock lock(*this);
  YARD_ASSIGN_OR_RETURN(auto st, db_->Prepare("INSERT INTO ledger(instance_id, user, job_id, kind, "
                                              "machine_type, market, start, end, cost) "
                                              "VALUES(?,?,?,?,?,?,?,?,?)"));
  st.Bind(1, e.instance_id)
      .Bind(2, e.user)
      .Bind(3, e.job_id)
      .Bind(4, e.kind)
      .Bind(5, e.machine_type)
      .Bind(6, e.market)
      .Bind(7, e.start)
      .Bind(8, e.end)
      .Bind(9, e.cost);
  return st.Run();
}

StatusOr<std::vector<LedgerEntry>> Store::LedgerFor(const std::string& user) {
  Lock lock(*this);
  YARD_ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT instance_id, user, job_id, kind, "
                                              "machine_type, market, start, end, cost FROM ledger "
                                              "WHERE ?1 = '' OR user = ?1 ORDER BY start, id"));
  st.Bind(1, user);
  std::vector<LedgerEntry> out;
  for (;;) {
    YARD_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(LedgerEntry{st.Text(0), st.Text(1), st.Text(2), st.Text(3), st.Text(4),
                              st.Text(5), st.Double(6), st.Double(7), st.Double(8)});
  }
  return out;
}

StatusOr<std::string> Store::GetSetting(const std::string& key, const std::string& fallback) {
  Lock lock(*this);
  YARD_ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT value FROM settings WHERE key = ?"));
  st.Bind(1, key);
  YARD_ASSIGN_OR_RETURN(bool row, st.Step());
  return row ? st.Text(0) : fallback;
}

Status Store::SetSetting(const std::string& key, const std::string& value) {
  Lock lock(*this);
  YARD_ASSIGN_OR_RETURN(auto st,
                        db_->Prepare("INSERT INTO settings(key, value) VALUES(?, ?) "
                                     "ON CONFLICT(key) DO UPDATE SET value = excluded.value"));
  return st.Bind(1, key).Bind(2, value).Run();
}

}  // namespace yard
