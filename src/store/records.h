// Rows of the store, as plain structs. The schema is in docs/store.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace yard {

using Json = nlohmann::json;

// Job states, in the order a job passes through them.
namespace job_state {
inline constexpr const char* kWaiting = "waiting";        // over the user's quota
inline constexpr const char* kRequesting = "requesting";  // looking for an instance
inline constexpr const char* kStarting = "starting";      // assigned, agent preparing
inline constexpr const char* kRunning = "running";
inline constexpr const char* kSucceeded = "succeeded";
inline constexpr const char* kFailed = "failed";
inline constexpr const char* kCancelled = "cancelled";
bool IsTerminal(const std::string& s);
bool IsActive(const std::string& s);  // requesting, starting, running
}  // namespace job_state

namespace instance_state {
inline constexpr const char* kRequested = "requested";  // asked of a cloud, not yet granted
inline constexpr const char* kProvisioning = "provisioning";
inline constexpr const char* kIdle = "idle";
inline constexpr const char* kBusy = "busy";
inline constexpr const char* kCooling = "cooling";
inline constexpr const char* kTerminating = "terminating";
inline constexpr const char* kTerminated = "terminated";
inline constexpr const char* kLost = "lost";
bool IsTerminal(const std::string& s);
}  // namespace instance_state

// A machine id the scheduler gave up on for a job, and why (shown when no
// machine could be had).
struct FallbackAttempt {
  std::string machine;
  std::string reason;
};

// The scheduler's state of one job that must survive a restart (the
// controller owns it: server/placement.cc, lifecycle.cc, controller.cc;
// docs/scheduling.md tells the rules). Stored as one JSON object in the
// jobs.sched column; an unset optional is an absent key, and keys this
// version does not know are kept as they were (`unknown`).
struct JobSchedule {
  size_t machine = 0;                            // index of the machine id being tried
  std::vector<FallbackAttempt> attempts;         // machine ids given up on, in order
  std::optional<double> requested_at;            // when the current request started
  std::optional<std::string> held_capacity;      // type whose capacity the job waits for
  std::optional<double> waiting_since;           // entered "waiting" (over the quota)
  double next_check = 0;                         // a waiting job's next look at its quota
  std::string run_instance;                      // whose records the current attempt's are
  int64_t restarts = 0;                          // requeues after preemption or loss
  std::optional<Json> resume_from;               // checkpoint a requeued job resumes from
  bool no_pipeline = false;                      // once revoked, never queued behind a job again
  std::optional<double> pipelined_at;            // queued behind a running job at
  std::optional<double> pipelined_requested_at;  // requested_at before it was queued
  int64_t output_bytes = 0;                      // output stored (for the per-job cap)
  bool output_capped = false;                    // the cap's marker was written
  Json unknown = Json::object();

  Json ToJson() const;
  // Reads what ToJson wrote (or an older server's subset); a key of the
  // wrong type reads as unset rather than throwing.
  static JobSchedule FromJson(const Json& j);
};

struct JobRecord {
  std::string id;
  std::string user;
  std::string state;
  Json spec = Json::object();  // the submitted spec (command, bundle, machines, ...)
  std::string description;
  std::string instance_id;
  std::string machine_type;
  double created_at = 0;
  double updated_at = 0;
  std::optional<int64_t> exit_code;
  std::string message;
  int64_t last_seq = 0;   // highest event seq stored
  int64_t attempt = 0;    // current run attempt (1 once first assigned)
  int64_t run_acked = 0;  // highest agent record seq stored for `attempt`
  bool cancel_requested = false;
  JobSchedule sched;

  // The public JSON form (docs/api.md), without the bundle.
  Json ToApiJson() const;
};

struct InstanceRecord {
  std::string id;
  std::string machine_type;
  std::string provider;
  std::string state;
  std::string user;    // whose jobs may use it (set when first assigned)
  std::string job_id;  // current job, if busy
  double created_at = 0;
  double state_since = 0;
  double last_heartbeat = 0;
  double cool_until = 0;
  Json info = Json::object();  // provider data (pid, folder, cores, ...)
  // SHA-256 (hex) of the instance's agent credentials (server/agent_credentials.h):
  std::string bootstrap_hash;   // single-use, minted at launch, exchanged at register
  std::string credential_hash;  // chosen by the agent at its first register; "" before

  Json ToApiJson(double now) const;
};

struct EventRecord {
  int64_t seq = 0;
  double time = 0;
  std::string kind;
  Json body;  // the whole event, seq/time/kind included
};

// An event as stored: its seq and its body as JSON text (one line). An
// output event stored since schema version 3 keeps its bytes apart, exactly
// as the job wrote them, in `output`; its `json` then has no "data".
struct StoredEvent {
  int64_t seq = 0;
  std::string json;
  std::optional<std::string> output;
};

// An event to append: its fields (kind first of all; seq and time are
// filled in) and, for an output event, its bytes (kept out of the JSON, so
// they are stored exactly and never encoded; they must outlive the append).
struct NewEvent {
  NewEvent(Json b) : body(std::move(b)) {}  // NOLINT: a plain JSON event converts
  NewEvent(Json b, std::string_view out) : body(std::move(b)), output(out) {}
  Json body;
  std::optional<std::string_view> output;
};

// One priced interval of an instance: kind "running" (provisioning, idle
// or busy) or "cooling". `cost` is in the catalog's currency.
struct LedgerEntry {
  std::string instance_id;
  std::string user;
  std::string job_id;
  std::string kind;
  std::string machine_type;
  std::string market;
  double start = 0;
  double end = 0;
  double cost = 0;
};

// Who is calling: a user, or the agent of one instance.
struct TokenInfo {
  std::string user;  // the user; for agents, their instance's user ("" before its first job)
  // "user", "metrics" (reads GET /metrics only), "agent" (an instance
  // credential) or "bootstrap"
  std::string kind;
  std::string instance;  // agents: the only instance the credential speaks for
  // User and metrics tokens: what the token may do (server/token_auth.h)
  // and the hash it is stored under (to check it again later: open streams,
  // page sessions). Empty for agents.
  std::string scope;
  std::string token_hash;
};

// An API token as stored (tokens table; docs/store.md). Never the plaintext.
struct TokenRecord {
  std::string id;    // first 12 hex digits of `hash`: names it in list and revoke
  std::string hash;  // SHA-256 of the plaintext
  std::string user;
  std::string kind;   // "user" or "metrics"
  std::string scope;  // "read", "submit", "admin" or "metrics"
  double created_at = 0;
  double expires_at = 0;  // 0: never
  double last_used = 0;   // 0: never; written at most once a minute per token
  double revoked_at = 0;  // 0: not revoked
};

}  // namespace yard
