// JobRunner: one job attempt, from assignment to exit record, on a thread of
// its own:
//   prepare the folder (bundle, checkpoint to resume from, environment)
//   -> run the command through JobProcess
//   -> pump its output and metrics into records; mirror its artifacts
//   -> after it ends: a final artifact sync, then the exit record.
// Every record goes through the EventSpool. Failures before the command runs
// (a bad assignment, a bundle that cannot be unpacked, a shim that cannot
// start) end the attempt with an exit record saying why, never a crash.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "agent/agent.h"
#include "agent/artifact_watcher.h"
#include "agent/chunk_cache.h"
#include "agent/event_spool.h"
#include "agent/job_process.h"
#include "agent/job_setup.h"
#include "agent/metrics_tail.h"
#include "agent/sandbox.h"
#include "agent/sandbox_template.h"
#include "agent/shim_zygote.h"
#include "agent/stop_signal.h"
#include "agent/warm_runner.h"
#include "client/transfer.h"
#include "common/command_runner.h"
#include "common/thread_annotations.h"

namespace yard {

// What a job needs from its agent. Every pointer outlives the runner.
struct JobContext {
  const AgentConfig* config = nullptr;
  EventSpool* spool = nullptr;
  const ChunkCache* cache = nullptr;
  const ChunkUploader* uploader = nullptr;
  // The agent is stopping: the job is ended without final sync or exit
  // record (the server decides its fate), its spool kept for the next agent.
  const StopSignal* agent_stop = nullptr;
  EnvMap inherited_env;  // the agent's own environment
  // Serves Keras fit jobs from a runner that imported TensorFlow already;
  // null: every job starts cold (warm_runner.h).
  WarmPool* warm = nullptr;
  // Spot interruption notices (preemption_watcher.h); null: not watched.
  // With a notice the attempt tells its job, ends it by the deadline and
  // writes no exit record: the agent reports the instance preempted and the
  // server requeues the job.
  PreemptionState* preemption = nullptr;
  // Confined jobs enter a sandbox built once (sandbox_template.h) when
  // they can; null: each gets its own bwrap.
  SandboxTemplates* sandbox_templates = nullptr;
  // Forks each job's shim (shim_zygote.h); null: each is spawned.
  ShimZygote* shim_zygote = nullptr;
  // Remembers confined jobs' sandbox prefixes (sandbox.h); null: each job
  // computes its own.
  SandboxPrefixCache* sandbox_prefixes = nullptr;
  // Runs the tools a job needs (pip, podman, scontrol); null: real
  // processes. Tests pass a fake.
  CommandRunner* commands = nullptr;
  // Called on the runner's thread as its last act (Done() is true and
  // Join() returns at once after it): the agent starts a queued job then.
  std::function<void()> on_done;
};

class JobRunner {
 public:
  // `parse_status` is the result of Assignment::Parse: when not OK the
  // attempt ends at once with an exit record carrying it.
  JobRunner(JobContext context, Assignment assignment, Status parse_status);
  ~JobRunner();  // Join()s
  JobRunner(const JobRunner&) = delete;
  JobRunner& operator=(const JobRunner&) = delete;

  void Start();
  // Thread-safe. Terminates the job; its exit record has cancelled=true and
  // a message starting with `reason`. Later calls are ignored.
  void Cancel(const std::string& reason);
  // Thread-safe: the exit record is spooled (or the job was abandoned), so
  // the thread is ending and Join() returns at once.
  bool Done() const { return done_; }
  void Join();

  const std::string& job() const { return a_.job; }
  int64_t attempt() const { return a_.attempt; }

 private:
  void Main();
  void RunCommand(const JobPaths& paths, const std::string& resume_path);
  // Puts the folder of `yard` (where yard-train sits) first on env's PATH.
  void PutYardToolsOnPath(EnvMap* env) const;
  // The job's runtime: a container (sets `container_id_file`, to remove it
  // afterwards) or a Python environment, each shown as its own step. The
  // error is the message to fail the job with.
  Status SetUpRuntime(const JobPaths& paths, const std::string& resume_path,
                      CommandRunner* commands, JobSpawnOptions* options,
                      std::string* container_id_file);
  // Confines the job when the agent is told to (sandbox.h); the error is
  // the message to fail the job with.
  Status Confine(const JobPaths& paths, JobSpawnOptions* options);
  // With ctx_.sandbox_templates: the prepared sandbox `options` (already
  // confined) can enter instead of a bwrap of its own; none (the job gets
  // its bwrap) when it cannot be had, which the agent log says.
  void UseSandboxTemplate(JobSpawnOptions* options);
  // Starts the command: across nodes, in a warm runner that fits, or as a
  // new process. On failure sets `failure_exit_code` (1: could not prepare,
  // 127: could not run) and returns the message to fail with.
  StatusOr<std::unique_ptr<JobProcess>> StartProcess(const JobPaths& paths,
                                                     JobSpawnOptions* options,
                                                     int* failure_exit_code);
  // Syncs the checkpoint, log and output folders while the job runs.
  std::unique_ptr<ArtifactWatcher> MakeWatcher(const JobPaths& paths);
  // The job's working folder ("work"), scanned once at its end: files the
  // job wrote or changed there (a model saved beside the script) are synced;
  // the bundle's own files, as they are when this is called, are not.
  std::unique_ptr<ArtifactWatcher> MakeWorkWatcher(const JobPaths& paths);
  ExitInfo Pump(JobProcess* process);
  // Called by the pump: tells the job of a spot interruption notice (once:
  // notice file, then the signal, then a decision record), shows rebalance
  // recommendations, and terminates the job at the notice's deadline.
  void WatchPreemption(JobProcess* process, bool* terminated);
  void TellJobOfNotice(JobProcess* process, const PreemptionNotice& notice);
  // A notice came: the attempt ends without an exit record (after its
  // final artifact scan when it ran). `what` says how far it got.
  void EndPreempted(const std::string& what);
  bool Preempted() const;
  // Spools the metric lines the job has written since the last call.
  // Thread-safe: the pump and the artifact watcher both call it.
  void EmitMetrics(bool final);
  void Emit(const Json& record);
  // Spools an output record of exactly these bytes.
  void EmitOutput(std::string_view data);
  // One record per piece, written to the spool at once.
  void EmitOutputs(const std::vector<std::string_view>& pieces);
  // Calls `append` until the spool takes the record: a full disk is waited
  // out (a second at a time; the job waits on its output pipe meanwhile),
  // so nothing the job produced is lost to it. Other errors, or the agent
  // stopping, give up with one log line.
  void AppendWaitingForRoom(const std::function<StatusOr<int64_t>()>& append);
  void LogSpoolError(const StatusOr<int64_t>& seq);
  void FailEarly(int exit_code, const std::string& message);
  void Finish(int exit_code, const std::string& message, bool cancelled);
  bool cancelled() const { return cancelled_; }
  std::string cancel_reason() const;

  // ctx_.commands, or own_commands_ when it is null.
  CommandRunner* Commands() { return ctx_.commands ? ctx_.commands : &own_commands_; }

  JobContext ctx_;
  ProcessCommandRunner own_commands_;
  Assignment a_;
  Status parse_status_;
  std::atomic<bool> cancelled_{false};
  mutable Mutex mu_;
  std::string cancel_reason_ GUARDED_BY(mu_);
  std::atomic<bool> done_{false};
  std::atomic<bool> spool_error_logged_{false};
  std::unique_ptr<class RankLabeler> labeler_;  // multi-node jobs only
  Mutex metrics_mu_;
  // Held while the job runs: its descriptor is the job's sandbox.
  std::shared_ptr<const SandboxTemplate> sandbox_template_;
  std::unique_ptr<MetricsTail> metrics_ GUARDED_BY(metrics_mu_);  // set before the watcher starts
  // Preemption, touched by the job's thread only.
  std::string notice_path_;
  bool told_of_notice_ = false;
  std::chrono::steady_clock::time_point preempt_deadline_;
  size_t rebalances_shown_ = 0;
  std::thread thread_;
};

}  // namespace yard
