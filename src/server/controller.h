// Controller: the scheduler and the state machine of jobs and instances.
//
// It keeps the non-terminal jobs and instances in memory (indexed for the
// scheduler) and writes every transition through to the Store in one
// transaction together with the job's events, so the store stays the truth
// a restarted server recovers from (Recover).
//
// Thread-safety: all public methods may be called from any thread; state is
// guarded by one mutex. Long polls wait on the Notifier outside that mutex.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/blob_store.h"
#include "common/clock.h"
#include "common/status.h"
#include "providers/catalog.h"
#include "providers/provider.h"
#include "server/notifier.h"
#include "store/store.h"

namespace yard {

struct ControllerOptions {
  double heartbeat_s = 1.0;            // agents heartbeat this often
  double heartbeat_timeout_s = 10.0;   // silent longer: the instance is lost
  double provisioning_timeout_s = 120.0;
  double idle_grace_s = 2.0;           // a fresh instance with no job waits this long
  std::string default_machine = "local";
};

class Controller {
 public:
  Controller(Store* store, BlobStore* blobs, Catalog catalog,
             std::map<std::string, Provider*> providers, AgentLaunchInfo agent_launch,
             const Clock* clock, ControllerOptions options);
  ~Controller();

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
  // The user's instances (all states when include_ended), API JSON.
  StatusOr<Json> ListInstancesFor(const std::string& user, bool include_ended);
  const Catalog& catalog() const { return catalog_; }
  int AvailableNow(const MachineType& type);

  // ---- agent side ----
  StatusOr<InstanceRecord> RegisterAgent(const std::string& instance_id);
  Status Heartbeat(const std::string& instance_id);
  // Long poll: an assignment, a cancel or terminate, or {} after `wait_s`.
  StatusOr<Json> PollWork(const std::string& instance_id, double wait_s);
  // Stores a batch of agent records (see docs/api.md); returns the highest
  // agent seq stored for that job attempt. FailedPrecondition on a gap.
  StatusOr<int64_t> AcceptAgentRecords(const std::string& instance_id, const std::string& job_id,
                                       int64_t attempt, int64_t first, const Json& records);

  Notifier& notifier() { return notifier_; }
  // Runs one scheduling and monitoring pass now (tests use it with a fake clock).
  void RunPassForTest() { Pass(); }

 private:
  // All REQUIRE mu_ held.
  void Pass();
  void PlaceQueuedJobs();
  bool TryReuseInstance(JobRecord& job);
  bool TryLaunchInstance(JobRecord& job);
  void Assign(JobRecord& job, InstanceRecord& inst, const std::string& how);
  void FinishJob(JobRecord& job, const std::string& state, std::optional<int64_t> exit_code,
                 const std::string& message);
  void ReleaseInstance(InstanceRecord& inst, double cool_down_s);
  void TerminateInstance(InstanceRecord& inst, const std::string& why);
  void MarkLost(InstanceRecord& inst, const std::string& reason);
  void MonitorInstances();
  Status AppendJobEvents(JobRecord& job, std::vector<Json> events);
  void SaveInstance(InstanceRecord& inst, const std::string& state);
  void LogError(const Status& s, const char* where);
  Provider* ProviderFor(const std::string& machine_type);
  StatusOr<Json> ValidateSpec(const std::string& user, const Json& spec);
  std::optional<Json> WorkFor(const std::string& instance_id);

  Store* const store_;
  BlobStore* const blobs_;
  const Catalog catalog_;
  const std::map<std::string, Provider*> providers_;
  const AgentLaunchInfo agent_launch_;
  const Clock* const clock_;
  const ControllerOptions options_;
  Notifier notifier_;

  std::mutex mu_;
  std::map<std::string, JobRecord> jobs_;            // non-terminal jobs, GUARDED_BY(mu_)
  std::deque<std::string> queue_;                    // requesting job ids, FIFO, GUARDED_BY(mu_)
  std::map<std::string, InstanceRecord> instances_;  // non-terminal, GUARDED_BY(mu_)
  std::map<std::string, double> heartbeats_;         // GUARDED_BY(mu_)
  std::set<std::string> capacity_noted_;             // jobs told "no capacity", GUARDED_BY(mu_)
  std::set<std::string> cancel_sent_;                // jobs whose cancel reached the agent

  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace yard
