// Controller: the scheduler and the state machine of jobs and instances.
//
// It keeps the non-terminal jobs and instances in memory (indexed for the
// scheduler) and writes every transition through to the Store, together
// with the job's events, so the store stays the truth a restarted server
// recovers from (Recover).
//
// Scheduling rules (docs/scheduling.md has the full story):
//   quotas    a user has at most max_active_jobs requesting/starting/running
//             jobs; more wait (state "waiting"), re-checked every
//             wait_new_job_interval_s, giving up after wait_new_job_s (> 0).
//             At most max_active_instances instances; when only that blocks
//             a job, the user's oldest cooling instance of a type the job
//             cannot use is ended.
//   reuse     an idle/cooling instance of the user of any listed type, earlier
//             types first, before anything new is provisioned. Only one
//             launched with exactly the job's settings (none for none).
//   settings  a job's provider settings (spec "settings") are merged over the
//             type's catalog options for Available and Launch; the provider
//             says which keys it accepts (Provider::JobSettingKeys).
//   fallback  machine ids are requested in order; a type whose provider
//             grants no capacity within wait_request_s is withdrawn and the
//             next requested; all failing fails the job listing every attempt.
//             The clock stands still while the instance quota holds the job.
//   cost      a pass visits one job per group of like jobs (JobQueue) plus
//             the due deadlines; its writes are one transaction.
//   requeue   a lost or preempted instance puts its job back in the queue
//             (at most max_restarts times), resuming from its newest checkpoint.
//   pipeline  an instance whose agent polls with pipeline=1 may hold one job
//             queued behind the one it runs (its "next"): a queued job that
//             the pass could place nowhere else now (no free instance, no new
//             one) goes to a busy instance of its user that fits it (a listed
//             type and market, the same settings) and that its current job
//             keeps (cool_down_s > 0). It is "starting" there; it runs the
//             moment the current job ends on the instance, without a round
//             trip (the server makes it "running" on that job's exit record).
//             One that waited kPipelineWaitS is taken back (unstarted: the
//             agent hands it back) and placed again like any queued job.
//             Quotas count it as active from its assignment, as any job.
//   pricing   the ledger holds priced intervals (running, cooling) per
//             instance; see pricing.h.
//
// Time: scheduling semantics use the injectable Clock; liveness
// (heartbeats, provisioning timeouts) uses the steady clock, so a test that
// moves a FakeClock does not make agents look dead.
//
// Thread-safety: all public methods may be called from any thread; state is
// guarded by one mutex. Long polls wait on the Notifier outside that mutex.
#pragma once

#include <ext/pb_ds/assoc_container.hpp>
#include <ext/pb_ds/tree_policy.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "common/blob_store.h"
#include "common/clock.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "providers/catalog.h"
#include "providers/provider.h"
#include "server/agent_batch.h"
#include "server/agent_credentials.h"
#include "server/job_queue.h"
#include "server/notifier.h"
#include "server/pricing.h"
#include "store/store.h"

namespace yard {

struct Quota {
  int max_active_jobs = 5;
  int max_active_instances = 5;
};

struct ControllerOptions {
  double heartbeat_timeout_s = 10.0;  // silent longer: the instance is lost
  double provisioning_timeout_s = 300.0;
  double idle_grace_s = 2.0;  // a fresh instance with no job waits this long
  std::string default_machine = "local";
  Quota quota;                               // the default per user
  std::map<std::string, Quota> user_quotas;  // overrides
  PricingSettings pricing;
  int default_max_restarts = 3;
  // Output stored per job; past it, output is dropped after a marker line
  // (`yard server --max-job-output-mb`). <= 0: no cap.
  int64_t max_output_bytes_per_job = int64_t{1} << 30;
  // Called when a change the controller made in memory could not be stored
  // (a full disk, an I/O error: the store rolled it back). Memory is then
  // ahead of the store, and no later call can mend that (a job finished in
  // memory only stays 'running' in the store for ever), so by default the
  // store refuses everything from then on (Store::Poison), the calls in
  // flight answer with the reason, and the server exits (kExitStoreDiverged)
  // 0.3 s later; its next start recovers from the store, as after a crash;
  // agents keep and resend their records. Tests set their own.
  std::function<void(const Status&)> on_store_diverged;
};

// The exit status of a server that stopped because its store refused a write
// (ControllerOptions::on_store_diverged).
inline constexpr int kExitStoreDiverged = 75;

class Controller {
 public:
  // How long a job may wait as an instance's next (pipelined behind its
  // current job) before it is taken back and placed again (controller.h, "pipeline").
  static constexpr double kPipelineWaitS = 1.0;

  Controller(Store* store, BlobStore* blobs, Catalog catalog,
             std::map<std::string, Provider*> providers, AgentLaunchInfo agent_launch,
             const Clock* clock, ControllerOptions options);
  ~Controller();

  // How many records of attempt `attempt` of `job_id` the server holds, or
  // will never take again (an earlier attempt's are acknowledged and
  // dropped on arrival): a spool with no more is delivered
  // (ClearInstanceFolder). -1 for an unknown job. Reads the store only.
  int64_t DeliveredRecords(const std::string& job_id, int64_t attempt);

  // Loads non-terminal jobs and instances from the store; adopts live
  // instances (they get a fresh heartbeat grace) and marks gone ones lost.
  Status Recover();
  // Starts / stops the background thread (placement, heartbeats, cooling).
  void Start();
  void Stop();

  // ---- user side ----
  // Validates `spec` (see docs/api.md) and queues a new job of `user`.
  StatusOr<JobRecord> SubmitJob(const std::string& user, const Json& spec);
  // The job if it belongs to `user`; NotFound otherwise (never "forbidden":
  // other users' job ids are not confirmed to exist).
  StatusOr<JobRecord> GetJobFor(const std::string& user, const std::string& id);
  StatusOr<JobRecord> CancelJob(const std::string& user, const std::string& id);
  // The user's instances (all states when include_ended), API JSON with the
  // current price per hour.
  StatusOr<Json> ListInstancesFor(const std::string& user, bool include_ended);
  // Ends the user's idle/cooling instance `id` ("" = all of them). Returns
  // the ids ended.
  StatusOr<std::vector<std::string>> EndIdleInstances(const std::string& user,
                                                      const std::string& id);
  // The user's costs: ledger entries plus open intervals priced up to now.
  StatusOr<Json> CostFor(const std::string& user);
  const Catalog& catalog() const { return catalog_; }
  const std::string& default_machine() const { return options_.default_machine; }
  int AvailableNow(const MachineType& type);
  // The provider named `name` (e.g. "sim"), or nullptr.
  Provider* provider(const std::string& name);

  // ---- agent side ----
  // Every agent call is first authenticated against credentials() (see
  // agent_credentials.h); these methods trust the instance id they get.
  AgentCredentials& credentials() { return credentials_; }
  // Binds the agent's own `credential` to `instance_id`, whose bootstrap
  // the caller presented: at most one credential per instance, ever (the
  // same one again is fine). Unauthenticated when another was bound first.
  Status BindAgentCredential(const std::string& instance_id, const std::string& credential);
  StatusOr<InstanceRecord> RegisterAgent(const std::string& instance_id);
  Status Heartbeat(const std::string& instance_id);
  // Long poll: an assignment, a cancel, a revoke or terminate, or {} after
  // `wait_s`. `pipeline`: the agent runs an assignment queued behind its
  // job as soon as that ends and hands back an unstarted one on a revoke,
  // so the instance may be given its next job while it runs one.
  StatusOr<Json> PollWork(const std::string& instance_id, double wait_s, bool pipeline = false);
  // Stores a batch of agent records (see docs/api.md); returns the highest
  // agent seq stored for that job attempt. FailedPrecondition on a gap;
  // PermissionDenied when the job's current attempt is not assigned to
  // `instance_id` (records of an earlier attempt are acknowledged, unstored).
  StatusOr<int64_t> AcceptAgentRecords(const std::string& instance_id, const std::string& job_id,
                                       int64_t attempt, int64_t first, const Json& records);
  // The same for records taken apart already (the framed body, whose output
  // bytes are stored as they are, never parsed or encoded). `next_work`
  // (non-null: the agent asked with work=1, docs/api.md): when the batch
  // holds an exit record and the instance's next assignment is ready, it is
  // set to what a poll would answer ({"assign": ...}), chosen and delivered
  // in the same lock and transaction as the exit (WorkFor: the poll's own
  // path), so a long poll never gets it too; else left empty (the agent
  // polls). A job handed out so that no record of its attempt arrived yet
  // is handed out again with the answer to a resent exit batch (the answer
  // that carried it may have been lost; the agent ignores an attempt it
  // knows).
  StatusOr<int64_t> AcceptAgentBatch(const std::string& instance_id, const std::string& job_id,
                                     int64_t attempt, int64_t first,
                                     const std::vector<AgentRecord>& records,
                                     Json* next_work = nullptr);

  // The agent of `instance_id` says its instance is being taken back (a
  // spot interruption notice) and has delivered its job's records: the
  // instance ends (the provider terminates it: a "stop" or "hibernate"
  // action would leave it stopped) and its job is requeued now, under the
  // usual max_restarts. NotFound for an instance that is not live.
  Status AgentPreempted(const std::string& instance_id, const std::string& reason);

  Notifier& notifier() { return notifier_; }
  // Runs one full scheduling and monitoring pass now (tests use it with a
  // fake clock; the background thread checks liveness at most every 100 ms).
  void RunPass();
  // Pass statistics, for the scheduler benchmark and tests.
  struct PassStats {
    uint64_t passes = 0;
    uint64_t placements = 0;      // jobs assigned to an instance
    uint64_t grants = 0;          // new instances granted for a job (assigned when it registers)
    uint64_t visits = 0;          // queued jobs a pass tried to place (group heads, due deadlines)
    uint64_t waiting_checks = 0;  // waiting jobs a pass looked at (their check was due)
    double pass_seconds = 0;      // wall time spent placing: passes, and ReuseNow at a job's end
    uint64_t queued = 0;          // requesting jobs in the queue now (parked ones included)
    uint64_t waiting = 0;         // jobs waiting for their user's quota now
  };
  PassStats pass_stats();
  // Calls into providers so far: (provider, call) -> (calls, errors).
  std::map<std::pair<std::string, std::string>, std::pair<uint64_t, uint64_t>> ProviderCalls();

 private:
  // --- placement (placement.cc); all REQUIRES(mu_) ---
  // Group keys that found no instance in the current pass.
  using Missed = std::set<std::string>;
  void Pass() REQUIRES(mu_);
  void CheckWaitingJobs() REQUIRES(mu_);
  void UnwaitJob(JobRecord& job, double now) REQUIRES(mu_);
  // Lets `user`'s longest-waiting jobs in while the job quota has room.
  void UnwaitOldest(const std::string& user, double now) REQUIRES(mu_);
  void PlaceQueuedJobs() REQUIRES(mu_);
  void PlaceDueRequests(Missed& missed) REQUIRES(mu_);
  // Hands `user`'s free instances to their queued jobs now, in queue order,
  // as the next pass would (reuse only: new instances are the pass's).
  // FinishJob calls it for a kept instance: the next job starts in the same
  // transaction as the end of the last.
  void ReuseNow(const std::string& user) REQUIRES(mu_);
  bool HasFreeInstance(const std::string& user) const REQUIRES(mu_);
  // Tries once to place a queued, unparked job. Returns true when it left its
  // group (assigned, granted a new instance, failed, or moved on to its next
  // machine id); otherwise its group is in `missed`.
  bool PlaceJob(JobRecord& job, Missed& missed) REQUIRES(mu_);
  bool TryReuseInstance(JobRecord& job) REQUIRES(mu_);
  bool MakeRoomForInstance(JobRecord& job) REQUIRES(mu_);
  bool RequestNewInstance(JobRecord& job, Missed& missed) REQUIRES(mu_);
  // True (and the job keeps its place, its fallback clock stopped) when the
  // job asks for its last machine id and that capacity is held by instances
  // that will end (Provider::CapacityComesBack).
  bool WaitForHeldCapacity(JobRecord& job, Provider& provider, const MachineType& type, bool last)
      REQUIRES(mu_);
  void FailAttempt(JobRecord& job, const std::string& machine, const std::string& reason)
      REQUIRES(mu_);
  // Requested instances (Provider::GrantsLater): the provider's answer, the
  // grant itself, and the withdrawal when the job's wait_request_s ran out
  // first (true when one was withdrawn; the job then moved on).
  void ApplyLaunchOutcome(const LaunchOutcome& outcome) REQUIRES(mu_);
  void GrantRequested(JobRecord& job, InstanceRecord& inst) REQUIRES(mu_);
  bool WithdrawRequestedInstance(JobRecord& job) REQUIRES(mu_);
  void Assign(JobRecord& job, InstanceRecord& inst, const std::string& how) REQUIRES(mu_);
  // Queue bookkeeping: a requesting job without an instance is in the group
  // of its placement key, its request for its current machine id started
  // (event, fallback clock, deadline in request_deadlines_).
  void Enqueue(JobRecord& job, bool front) REQUIRES(mu_);
  void EnterGroup(JobRecord& job) REQUIRES(mu_);
  void StartRequest(JobRecord& job, const std::string& machine_id) REQUIRES(mu_);
  void EndRequest(JobRecord& job) REQUIRES(mu_);
  void Dequeue(JobRecord& job) REQUIRES(mu_);
  // When the fallback from the job's current machine id is due: wait_request_s
  // after its request started, or after the last time the instance quota held
  // its group (then it was not requesting; requested_at moves there).
  double RequestDeadline(JobRecord& job) REQUIRES(mu_);
  int ActiveJobs(const std::string& user) const REQUIRES(mu_);
  int ActiveInstances(const std::string& user) const REQUIRES(mu_);
  const Quota& QuotaFor(const std::string& user) const REQUIRES(mu_);
  std::string WaitingPlace(const JobRecord& job) const REQUIRES(mu_);
  void ScheduleWaitCheck(JobRecord& job, double at) REQUIRES(mu_);

  // --- pipelining (pipeline.cc); all REQUIRES(mu_) ---
  // Makes `job` (queued, missed by the pass) the next job of a busy instance
  // that fits it; false when none does.
  bool TryPipeline(JobRecord& job) REQUIRES(mu_);
  // Gives the user's instances with a free next slot the first queued jobs
  // that a pass missed (called when an instance's next job started).
  void PipelineNow(const std::string& user) REQUIRES(mu_);
  bool FitsForPipeline(const JobRecord& job, const InstanceRecord& inst) const REQUIRES(mu_);
  // The job that ran on `inst` ended: its next job becomes its job (running
  // when its assignment was delivered: the agent started it at once).
  // False when the instance has no next job.
  bool PromoteNext(InstanceRecord& inst) REQUIRES(mu_);
  // Makes `job` the next job of `inst` (TryPipeline found it fits).
  void PipelineOnto(JobRecord& job, InstanceRecord& inst) REQUIRES(mu_);
  // Takes `job`, the next job of an instance, back to the front of the queue
  // (not started: its assignment was never delivered or the agent handed it
  // back); the attempt is not counted as a restart, and it is not pipelined
  // again.
  void ReturnUnstarted(JobRecord& job, const std::string& why) REQUIRES(mu_);
  // The job that ran on `inst` is over: the next job runs (true), or the
  // instance cools or ends (ReleaseInstance; `inst` may dangle then).
  bool JobLeftInstance(InstanceRecord& inst, double cool_down_s) REQUIRES(mu_);
  // Forgets `instance_id`'s next job (it ended or left); returns its id or "".
  std::string DropNext(const std::string& instance_id) REQUIRES(mu_);
  // A pipelined job's message to its agent (a cancel, a revoke, its
  // assignment), once each; nullopt when none is due.
  std::optional<Json> NextWorkFor(InstanceRecord& inst) REQUIRES(mu_);
  // The assignment the agent gets for `job`'s current attempt.
  Json AssignmentJson(const JobRecord& job) const REQUIRES(mu_);
  // The job's side of an assignment to `inst` (state starting, a new attempt).
  void StartAttempt(JobRecord& job, const InstanceRecord& inst) REQUIRES(mu_);
  // Next jobs that waited kPipelineWaitS: a revoke for delivered ones (the
  // agent hands them back if it has not started them), undelivered ones
  // back to the queue at once.
  void RevokeLongWaits() REQUIRES(mu_);
  // The instance's next job, or nullptr.
  JobRecord* NextJobOf(const std::string& instance_id) REQUIRES(mu_);
  // Rebuilds next_of_ from the recovered jobs (Recover).
  void RecoverNextJobs() REQUIRES(mu_);

  // --- lifecycle (lifecycle.cc); all REQUIRES(mu_) ---
  void FinishJob(JobRecord& job, const std::string& state, std::optional<int64_t> exit_code,
                 const std::string& message) REQUIRES(mu_);
  void RequeueOrFail(JobRecord& job, const std::string& what_happened) REQUIRES(mu_);
  void ReleaseInstance(InstanceRecord& inst, double cool_down_s) REQUIRES(mu_);
  void TerminateInstance(InstanceRecord& inst, const std::string& why) REQUIRES(mu_);
  void MarkLost(InstanceRecord& inst, const std::string& reason, bool preempted) REQUIRES(mu_);
  void MonitorInstances() REQUIRES(mu_);
  void OpenInterval(InstanceRecord& inst, const std::string& kind, const std::string& job_id)
      REQUIRES(mu_);
  void CloseInterval(InstanceRecord& inst) REQUIRES(mu_);
  MarketPrices PricesOf(const InstanceRecord& inst) const REQUIRES(mu_);
  double CurrentPricePerHour(const InstanceRecord& inst) const REQUIRES(mu_);
  std::optional<Json> NewestCheckpoint(const std::string& job_id) REQUIRES(mu_);
  Json CheckpointSiblings(const std::string& job_id, const Json& newest) REQUIRES(mu_);

  // --- helpers ---
  // Counts one call `call` of `p` and its outcome `s` (GET /metrics); returns s.
  Status Counted(Provider* p, const char* call, Status s);
  void CountCall(Provider* p, const char* call, bool ok);
  // Runs `fn` with all its store writes in one transaction (group commit).
  // If the transaction cannot start, `fn` runs anyway, each write on its own.
  void Batched(const std::function<void()>& fn);
  // True (and noted in the job's events) when an exit record from
  // `instance_id` comes after the job left that instance.
  bool ExitIsStale(JobRecord& job, const std::string& instance_id);
  // Sets *changed_memory once it changes the controller's memory (after
  // every check that can refuse the batch).
  StatusOr<int64_t> AcceptAgentRecordsLocked(const std::string& instance_id,
                                             const std::string& job_id, int64_t attempt,
                                             int64_t first, const std::vector<AgentRecord>& records,
                                             bool* changed_memory) REQUIRES(mu_);
  // A change made in memory was not stored (`s` says why): see
  // ControllerOptions::on_store_diverged.
  void StoreDiverged(const Status& s, const char* where);
  Status AppendJobEvents(JobRecord& job, std::vector<Json> events);
  // PermissionDenied unless job.user holds every chunk of `chunks` (an
  // agent's upload makes a chunk its instance's user's: routes_blobs.cc).
  Status CheckArtifactChunks(const JobRecord& job, const std::vector<std::string>& chunks);
  void SaveInstance(InstanceRecord& inst, const std::string& state) REQUIRES(mu_);
  // A copy of agent_launch_ with a new bootstrap credential for `inst`
  // (its hash kept in inst->bootstrap_hash).
  AgentLaunchInfo LaunchInfoFor(InstanceRecord* inst) const;
  // Keeps credentials_ in step with `inst`: its hashes, user and the chunks
  // of the job attempt it runs (call after any change of job or state).
  void SyncCredentials(const InstanceRecord& inst) REQUIRES(mu_);
  // Keeps free_ in step with `inst` (call after any change of state/job).
  void IndexInstance(const InstanceRecord& inst) REQUIRES(mu_);
  void AddInstance(const InstanceRecord& inst) REQUIRES(mu_);  // into instances_ + indexes
  // By value: callers pass the id inside the record this erases.
  void EraseInstance(std::string id) REQUIRES(mu_);  // out of instances_ + indexes
  // Adjusts active_jobs_of_ for a job moving from `old_state` to its state.
  void CountJob(const JobRecord& job, const std::string& old_state) REQUIRES(mu_);
  void LogError(const Status& s, const char* where);
  Provider* ProviderFor(const std::string& machine_type);
  // A register for an instance past provisioning comes from an agent started
  // again on the same machine: the job processes of the agent before it
  // ended with it (yard-shim follows its agent). A job handed to that agent
  // (running, or queued behind and delivered) is requeued as a lost
  // instance's would be (max_restarts, resuming from its newest checkpoint);
  // the instance, alive, becomes idle and can take it again. A job assigned
  // but not yet delivered stays: this agent's next poll gets it.
  void TakeBackFromRestartedAgent(InstanceRecord& inst) REQUIRES(mu_);
  // ValidateJobSpec (server/job_spec.h), then FailedPrecondition unless
  // `user` uploaded every chunk of the bundle. The spec as stored.
  StatusOr<Json> ValidateSpec(const std::string& user, const Json& spec);
  // InvalidArgument unless every key of spec's "settings" is accepted by the
  // provider of every machine type listed (spec["machines"], non-empty).
  Status CheckSettings(const Json& spec);
  std::optional<Json> WorkFor(const std::string& instance_id) REQUIRES(mu_);
  // The assignment for the answer to an exit batch of attempt
  // `ended_attempt` of `ended_job` from `instance_id` (AcceptAgentBatch's
  // `next_work`), or nullopt. The same batch again (its answer lost): the
  // assignment that answer carried, while that job is still the instance's,
  // without a cancel and without a record of its attempt. Else the
  // instance's job when it is starting (delivered by WorkFor), or else its
  // next job when its assignment is due (delivered by NextWorkFor): the
  // poll's own paths. Never a job with a cancel requested or a revoke due
  // (the poll brings those).
  std::optional<Json> AssignmentAfterExit(const std::string& instance_id,
                                          const std::string& ended_job, int64_t ended_attempt)
      REQUIRES(mu_);
  std::optional<Json> FreshAssignmentAfterExit(InstanceRecord& inst) REQUIRES(mu_);
  void TouchHeartbeat(const std::string& instance_id) REQUIRES(mu_);
  double SilentSeconds(const std::string& instance_id) REQUIRES(mu_);

  Store* const store_;
  BlobStore* const blobs_;
  const Catalog catalog_;
  const std::map<std::string, Provider*> providers_;
  const AgentLaunchInfo agent_launch_;
  const Clock* const clock_;
  const ControllerOptions options_;
  Notifier notifier_;
  AgentCredentials credentials_;

  // (created_at, job) in line order; order_of_key gives a job's place in
  // O(log n) (libstdc++'s policy tree: a std::set cannot count what is before).
  using WaitingLine =
      __gnu_pbds::tree<std::pair<double, std::string>, __gnu_pbds::null_type,
                       std::less<std::pair<double, std::string>>, __gnu_pbds::rb_tree_tag,
                       __gnu_pbds::tree_order_statistics_node_update>;

  Mutex mu_;
  std::map<std::string, JobRecord> jobs_ GUARDED_BY(mu_);  // non-terminal jobs
  JobQueue queue_ GUARDED_BY(mu_);                         // requesting jobs
  // (deadline, job) of every started request (see RequestDeadline).
  std::set<std::pair<double, std::string>> request_deadlines_ GUARDED_BY(mu_);
  std::map<std::string, InstanceRecord> instances_ GUARDED_BY(mu_);  // non-terminal
  std::map<std::string, double> heartbeats_ GUARDED_BY(mu_);  // clock_->Monotonic() of the last
  // Indexes over jobs_ and instances_ (kept by SaveInstance, CountJob):
  std::map<std::string, int> active_jobs_of_
      GUARDED_BY(mu_);  // user -> requesting/starting/running jobs
  std::map<std::string, int> instances_of_ GUARDED_BY(mu_);  // user -> live instances
  // (user, machine type, settings the instance was launched with: "" or JSON)
  using FreeKey = std::tuple<std::string, std::string, std::string>;
  std::map<FreeKey, std::set<std::pair<double, std::string>>> free_
      GUARDED_BY(mu_);  // idle/cooling, no job
  std::map<std::string, std::pair<FreeKey, double>> free_entry_
      GUARDED_BY(mu_);  // instance -> its free_ entry
  // Waiting jobs: per user in line order (for "3rd in line"), and by the
  // time each looks again.
  std::map<std::string, WaitingLine> waiting_of_ GUARDED_BY(mu_);
  std::set<std::pair<double, std::string>> wait_checks_ GUARDED_BY(mu_);  // (next_check, job)
  std::chrono::steady_clock::time_point last_monitor_ GUARDED_BY(mu_);
  std::set<std::string> noted_ GUARDED_BY(mu_);        // "job|note" said once
  std::set<std::string> cancel_sent_ GUARDED_BY(mu_);  // jobs whose cancel reached the agent
  // Pipelining: instance -> the job queued behind its current one, and the
  // instances whose agent polls with pipeline=1 (forgotten with the instance;
  // after a server restart known again from the agent's next poll).
  std::map<std::string, std::string> next_of_ GUARDED_BY(mu_);
  // Registers of each instance's agents, counted: a work poll begun before
  // the latest one is an earlier agent's (PollWork, RegisterAgent).
  std::map<std::string, uint64_t> registrations_ GUARDED_BY(mu_);
  std::set<std::string> pipelining_ GUARDED_BY(mu_);
  std::set<std::string> delivered_ GUARDED_BY(mu_);  // next jobs whose assignment went out
  // Per instance, the last assignment handed out with the answer to an exit
  // batch, and which batch (AssignmentAfterExit; forgotten with the instance).
  struct ExitAnswer {
    std::string ended_job;
    int64_t ended_attempt = 0;
    std::string job;
    int64_t attempt = 0;
  };
  std::map<std::string, ExitAnswer> exit_answers_ GUARDED_BY(mu_);
  std::map<std::string, bool> revoke_ GUARDED_BY(mu_);  // next jobs to ask back -> asked
  // Group keys that the last PlaceQueuedJobs could place nowhere: only
  // their jobs may be pipelined outside a pass (PipelineNow).
  std::set<std::string> last_missed_ GUARDED_BY(mu_);
  std::set<std::string> pass_missed_ GUARDED_BY(mu_);  // the same, being gathered
  PassStats stats_ GUARDED_BY(mu_);
  Mutex calls_mu_;  // provider calls come from any thread
  std::map<std::pair<std::string, std::string>, std::pair<uint64_t, uint64_t>> calls_
      GUARDED_BY(calls_mu_);

  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace yard
