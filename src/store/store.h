// Store: the durable truth of the controller, in SQLite (WAL mode).
//
// Every method is one transaction. A restarted server rebuilds its view
// from here. Thread-safe: one connection, serialized by an internal mutex
// (not recursive: a public method takes it once and the helpers it shares
// are *Locked, REQUIRES(mu_)); callers never hold transactions open across
// calls. The one re-entry is Transaction(): the methods its `fn` calls on
// the same thread join the lock it holds.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "store/output_log.h"
#include "store/records.h"
#include "store/sqlite.h"

namespace yard {

class Store {
 public:
  // Opens (creating if needed) and migrates the database at `path`; output
  // bytes live beside it, in `output/` (store/output_log.h).
  // FailedPrecondition if the file was written by a newer Trainyard.
  static StatusOr<std::unique_ptr<Store>> Open(const std::string& path);

  // The schema version this build writes.
  static int CurrentSchemaVersion();

  // WAL pages between automatic checkpoints (Open; SQLite's default is 1000).
  static constexpr int kWalCheckpointPages = 4000;

  // --- tokens ---
  // Creates a random token for `user` with `scope` ("read", "submit",
  // "admin" or "metrics"; server/token_auth.h says what each opens) that
  // expires at `expires_at` (Unix seconds; 0: never). Returns the plaintext:
  // only its SHA-256 is stored. Agents have per-instance credentials, kept
  // with their InstanceRecord.
  StatusOr<std::string> CreateToken(const std::string& user, const std::string& scope,
                                    double expires_at = 0);
  // The stored record of a token, revoked and expired ones included (the
  // caller decides: CheckToken in server/token_auth.h). Found by the hash of
  // the plaintext, so only hashes are ever compared. Unauthenticated when
  // unknown.
  StatusOr<TokenRecord> FindToken(const std::string& plaintext);
  StatusOr<TokenRecord> FindTokenByHash(const std::string& hash);
  // Tokens of `user` ("" = everyone), revoked ones included.
  StatusOr<std::vector<TokenRecord>> ListTokens(const std::string& user);
  // Marks the token with `id` (TokenRecord::id) revoked at `now`; with a
  // non-empty `user`, only that user's token. Returns it; NotFound when none.
  StatusOr<TokenRecord> RevokeToken(const std::string& id, const std::string& user, double now);
  // Moves the token's last use forward to `when` (never back).
  Status RecordTokenUse(const std::string& hash, double when);

  // --- jobs ---
  Status InsertJob(const JobRecord& job);
  StatusOr<JobRecord> GetJob(const std::string& id);
  // The user's jobs, newest first. `state` and `query` (substring of the
  // description) filter when non-empty.
  StatusOr<std::vector<JobRecord>> ListJobs(const std::string& user, const std::string& state,
                                            const std::string& query, int limit);
  // Jobs in any of `states` (for recovery and the scheduler), oldest first.
  StatusOr<std::vector<JobRecord>> JobsInStates(const std::vector<std::string>& states);
  // Per job state (all users): how many jobs and how many events they hold.
  struct JobStateCount {
    std::string state;
    int64_t jobs = 0;
    int64_t events = 0;
  };
  StatusOr<std::vector<JobStateCount>> CountJobsByState();
  // Writes the mutable fields of `job` (state, instance, exit, message,
  // attempt, run_acked, cancel_requested, updated_at).
  Status UpdateJob(const JobRecord& job);

  // Appends events to a job's stream, numbering them from last_seq + 1, and
  // (in the same transaction) writes `job` if given. `events` hold kind and
  // fields; seq and time are filled in. Returns the stored events.
  StatusOr<std::vector<EventRecord>> AppendEvents(const std::string& job_id,
                                                  std::vector<Json> events, double now,
                                                  const JobRecord* job_update);
  // The same; output events may carry their bytes apart (NewEvent::output),
  // stored exactly as given, in the job's output log (one write per call).
  StatusOr<std::vector<EventRecord>> AppendEventsWithOutput(const std::string& job_id,
                                                            std::vector<NewEvent> events,
                                                            double now,
                                                            const JobRecord* job_update);
  // Events with seq > after, at most `limit`; output bytes stored apart are
  // put back into "data" (JSON text of them needs valid UTF-8: dump with
  // error_handler_t::replace).
  StatusOr<std::vector<EventRecord>> ReadEvents(const std::string& job_id, int64_t after,
                                                int limit);
  // The same events as stored (JSON text, one line each, and output bytes
  // apart), without parsing: for streaming them out. At most `limit` events,
  // and no more after `max_bytes` of them (at least one), so a reader of a
  // fast stream holds a bounded amount in memory.
  StatusOr<std::vector<StoredEvent>> ReadEventText(const std::string& job_id, int64_t after,
                                                   int limit, size_t max_bytes = 4u << 20);
  // The job's newest event of `kind` after seq `after`, as stored text;
  // seq 0 when there is none.
  StatusOr<StoredEvent> LatestEventOfKind(const std::string& job_id, const std::string& kind,
                                          int64_t after = 0);

  // --- artifacts ---
  Status UpsertArtifact(const std::string& job_id, const std::string& dir, const Json& entry,
                        int64_t seq);
  // Newest entry per (dir, path): [{"dir", "entry"}].
  StatusOr<Json> ListArtifacts(const std::string& job_id);

  // --- blob ownership (who may read a chunk) ---
  Status AddBlobOwners(const std::string& user, const std::vector<std::string>& hashes);
  StatusOr<bool> UserOwnsBlob(const std::string& user, const std::string& hash);
  // Subset of `hashes` the user owns.
  StatusOr<std::vector<std::string>> OwnedBlobs(const std::string& user,
                                                const std::vector<std::string>& hashes);

  // Every sha256 (64 lower-case hex characters) that a job (its spec and
  // scheduling state), an artifact or an event other than output names:
  // the chunks the store still needs. Read on a connection of its own, so
  // the store is not held while it reads (committed data only).
  StatusOr<std::unordered_set<std::string>> ReferencedHashes();
  // Forgets who owned these chunks (after they were collected).
  Status RemoveBlobOwners(const std::vector<std::string>& hashes);

  // --- instances ---
  Status UpsertInstance(const InstanceRecord& inst);
  StatusOr<InstanceRecord> GetInstance(const std::string& id);
  // Instances not terminated (for recovery), or all when `include_ended`.
  StatusOr<std::vector<InstanceRecord>> ListInstances(bool include_ended);

  // --- price ledger ---
  Status AddLedgerEntry(const LedgerEntry& e);
  // Entries of `user` ("" = everyone), oldest first.
  StatusOr<std::vector<LedgerEntry>> LedgerFor(const std::string& user);

  // --- settings (small key/value) ---
  StatusOr<std::string> GetSetting(const std::string& key, const std::string& fallback);
  Status SetSetting(const std::string& key, const std::string& value);

  // Runs `fn` inside one transaction (BEGIN IMMEDIATE ... COMMIT); rolls
  // back if it returns an error or throws (the exception goes on), or if
  // any write inside could not be made (a full disk, an I/O error) even
  // when `fn` only logged it; then returns that error. All of it is stored,
  // or none. For multi-row updates by callers.
  // `fn` may call this store's methods (on the calling thread only): they
  // join the transaction. Other threads wait until it ends.
  Status Transaction(const std::function<Status()>& fn);

  // Every later call fails with `why` (not ok): for a server whose memory
  // got ahead of its store, which must store nothing more before it exits.
  void Poison(Status why);

  // Caps the database at `pages` pages (SQLite's max_page_count; <= 0:
  // SQLite's largest): past it writes fail as on a full disk. For tests.
  Status SetMaxPagesForTesting(int64_t pages);

 private:
  // Holds mu_ for a public method's scope, or joins it when this thread
  // is inside Transaction()'s `fn` (which holds it already).
  class SCOPED_CAPABILITY Lock {
   public:
    explicit Lock(Store& store) ACQUIRE(store.mu_);
    ~Lock() RELEASE();
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;

   private:
    Store& store_;
    bool joined_;
  };

  Store(std::unique_ptr<sql::Db> db, std::string output_dir)
      : db_(std::move(db)), output_log_(std::move(output_dir)) {}
  Status Migrate();
  // Where the job's next output bytes go in its log: past its last stored
  // output event's (read once, then kept).
  StatusOr<uint64_t> OutputEndLocked(const std::string& job_id) REQUIRES(mu_);
  std::optional<std::string> OutputBytesLocked(const sql::Stmt& st, int data_col, int off_col,
                                               const std::string& job_id,
                                               std::optional<OutputLog::Reader>* reader)
      REQUIRES(mu_);
  Status TransactionLocked(const std::function<Status()>& fn) REQUIRES(mu_);
  Status UpdateJobLocked(const JobRecord& job) REQUIRES(mu_);
  Status RunCached(const char* sql) REQUIRES(mu_);  // a statement without rows, cached

  Mutex mu_;
  // The thread running Transaction()'s `fn`, if any. Written only with mu_
  // held; read without it, only to compare with the reader's own id.
  std::atomic<std::thread::id> transaction_thread_{};
  std::unique_ptr<sql::Db> db_ PT_GUARDED_BY(mu_);
  const OutputLog output_log_;  // written and read with mu_ held
  // Per job: where its log's next bytes go (OutputEndLocked).
  std::unordered_map<std::string, uint64_t> output_end_ GUARDED_BY(mu_);
};

// The public id of a token: the first 12 hex digits of its hash.
std::string TokenIdOfHash(const std::string& hash);

// A random id with a readable prefix: "job-3f9a1c0d2b7e".
std::string NewId(const std::string& prefix);

}  // namespace yard
