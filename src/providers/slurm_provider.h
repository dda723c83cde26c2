// SlurmProvider: an instance is one Slurm allocation whose batch step runs
// `yard agent` (on the allocation's first node). docs/providers.md has the
// whole story; in short:
//
//   Launch     writes <work_dir>/<instance>/slurm-agent.sh (exec yard agent
//              --server URL --instance ID --dir DIR, confining its jobs:
//              SlurmAgentConfinementFlags) and sbatches it with the
//              machine type's partition, nodes, cpus, mem, gres and time
//              limit, --no-requeue, the agent token in sbatch's environment
//              (never in a file or argv), and none of the server's secrets
//              (SbatchExportList). inst->info["slurm_job_id"] = id.
//   Terminate  scancel (retried by the poller until Slurm has it).
//   watching   a poller thread runs squeue (our jobs) and sinfo (free CPUs)
//              every poll_interval_s. A job that ends, is requeued,
//              suspended or preempted, or loses a node is reported once
//              through TakeInterruptions with Slurm's state and reason (and
//              scancelled if anything of it is left); the controller
//              requeues its Trainyard job. A job still pending after
//              pending_timeout_s is withdrawn the same way.
//   Available  free slots of the type's partition per the last sinfo, less
//              our own jobs that Slurm has not started yet.
//
// Cooling needs nothing special: the allocation stays with an idle agent
// until the controller ends it or Slurm's time limit does (TIMEOUT, reported
// as an interruption of an idle instance).
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/command_runner.h"
#include "common/thread_annotations.h"
#include "providers/provider.h"

namespace yard {

// providers.slurm in the catalog file (docs/providers.md).
struct SlurmSettings {
  std::string work_dir;  // instance folders; must be visible to every node
  // The server's state folder (not a catalog key: FromJson's `home`). Jobs
  // never see it, nor work_dir, on any node (BatchScript).
  std::string server_home;
  std::string yard_binary;  // `yard` as the nodes see it; "" = the server's own
  std::string server_url;   // what agents dial; "" = the server's own URL
  std::string bin_dir;      // where sbatch, squeue... are; "" = PATH
  double poll_interval_s = 1.0;
  double pending_timeout_s = 120;
  std::vector<std::string> sbatch_args;  // added to every sbatch

  // `home`: the server's state folder (default work_dir = home/instances).
  static StatusOr<SlurmSettings> FromJson(const nlohmann::json& j, const std::string& home);
};

// What a machine type asks of Slurm: its "options" (partition, nodes, cpus,
// mem, gres, time, qos, account, sbatch_args), falling back to the type's
// cpus, memory_gb and gpus. A job's settings arrive merged into the options.
struct SlurmRequest {
  std::string partition;  // "" = the cluster's default
  int nodes = 1;
  int cpus = 1;         // per node
  std::string mem;      // per node, Slurm syntax ("4G"); "" = Slurm's default
  std::string gres;     // "gpu:2"
  std::string time;     // time limit, Slurm syntax ("1:00:00")
  std::string qos;      // "" = the association's default
  std::string account;  // "" = the user's default
  std::vector<std::string> extra;

  static StatusOr<SlurmRequest> ForType(const MachineType& type);
  std::vector<std::string> SbatchArgs() const;
};

class SlurmProvider : public Provider {
 public:
  // `clock` (which outlives this) times how long a job has been pending or
  // missing from squeue (its Monotonic()). With `start_poller` false nothing
  // polls on its own (tests call PollOnce).
  SlurmProvider(SlurmSettings settings, std::unique_ptr<CommandRunner> runner, const Clock* clock,
                bool start_poller = true);
  ~SlurmProvider() override;

  std::string name() const override { return "slurm"; }
  // partition, time, mem, gres, qos, account (kSlurmJobSettingKeys).
  std::set<std::string> JobSettingKeys(const MachineType& type) const override;
  int Available(const MachineType& type) override;
  Status Launch(const MachineType& type, const AgentLaunchInfo& agent,
                InstanceRecord* inst) override;
  Status Terminate(const InstanceRecord& inst) override;
  bool IsAlive(const InstanceRecord& inst) override;
  bool Adopt(const InstanceRecord& inst) override;
  std::vector<Interruption> TakeInterruptions() override;

  // One round of squeue + sinfo + pending scancels (the poller's work).
  void PollOnce();

 private:
  struct Job {
    std::string instance_id;
    std::string partition;
    std::string state = "SUBMITTED";  // Slurm's, as squeue last said
    std::string nodes;                // node list, once running
    bool started = false;             // seen RUNNING at least once
    double submitted = 0;             // clock_->Monotonic() at sbatch (or adoption)
    std::string ended_because;        // non-empty: reported (or to be)
  };
  struct Node {
    std::string name, partition, state;
    bool is_default_partition = false;
    int idle_cpus = 0;
  };

  std::string Tool(const std::string& name) const;
  StatusOr<std::string> ServerUrl(const AgentLaunchInfo& agent) const;
  std::string BatchScript(const AgentLaunchInfo& agent, const std::string& url,
                          const std::string& id, const std::string& dir) const;
  StatusOr<std::string> Submit(const SlurmRequest& req, const AgentLaunchInfo& agent,
                               const std::string& id, const std::string& dir);
  bool Cancel(const std::string& slurm_id);
  void PollJobs();
  void PollNodes();
  void RetryCancels();
  // Applies one squeue row (or its absence: state "").
  void Update(const std::string& slurm_id, Job& job, const std::string& state,
              const std::string& nodes, const std::string& reason) REQUIRES(mu_);
  void End(const std::string& slurm_id, Job& job, const std::string& why, bool cancel)
      REQUIRES(mu_);
  void PollerMain();

  const SlurmSettings settings_;
  const std::unique_ptr<CommandRunner> runner_;
  const Clock* const clock_;
  Mutex mu_;
  std::condition_variable wake_;
  std::map<std::string, Job> jobs_ GUARDED_BY(mu_);                 // by Slurm job id
  std::map<std::string, std::string> by_instance_ GUARDED_BY(mu_);  // instance -> Slurm id
  std::vector<Node> nodes_ GUARDED_BY(mu_);                         // last sinfo
  std::set<std::string> to_cancel_ GUARDED_BY(mu_);                 // scancel due or failed: retry
  std::vector<Interruption> interrupted_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread poller_;
};

// The options a job may set per job: where and how long it runs and what
// it is billed to. Not nodes/cpus (they are what the type is) and not
// sbatch_args (any flag at all, on a shared server).
inline const std::set<std::string> kSlurmJobSettingKeys = {"partition", "time", "mem",
                                                           "gres",      "qos",  "account"};

// The `yard agent` flags, for a shell command line, of an agent in a Slurm
// allocation: as an SSH host's (remote_agent.h), its jobs run confined when
// the node can confine them (each job is told why not when it cannot), see
// the cluster's files read-only (its shared data), and never
// `settings.work_dir` (every instance's folder, with its credential) nor
// `settings.server_home` (tokens, blobs, database), which nodes often see on
// the cluster's shared storage. docs/providers.md, "Slurm".
std::string SlurmAgentConfinementFlags(const SlurmSettings& settings);

// sbatch's `--export=` value for an agent's allocation: the names of
// `server_env`'s variables (KEY=VALUE) that are not secrets (process.h's
// IsSecretEnvName: the server's cloud keys and tokens), then the names of
// `agent_env` (what the agent is given: its token, its TLS pin). Names only:
// sbatch takes their values from its own environment, so no value is ever in
// argv. `--export=ALL` would hand every node all the server's secrets.
// A name sbatch could not read back (anything but [A-Za-z0-9_]) is left out.
std::string SbatchExportList(const std::vector<std::string>& server_env,
                             const std::vector<std::string>& agent_env);

// Parses `squeue -o %i|%T|%N|%r` output: id -> {state, nodes, reason}.
std::map<std::string, std::vector<std::string>> ParseSqueue(const std::string& out);

}  // namespace yard
