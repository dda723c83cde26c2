// Warm runners: a Keras fit job that lands on an instance whose previous job
// was one too starts training without importing TensorFlow again.
//
// Design. Importing TensorFlow takes seconds (torch about 1.5 s here), and
// it depends only on things known before the job: the instance's
// environment (CUDA_VISIBLE_DEVICES, TF_* variables, PATH, ...) and the
// runner's code. So when a job ran the shipped Keras runner
// (`python3 -m trainyard.runner SPEC`, trainyard/runner.py in its folder,
// no requirements.txt / environment.yml / Dockerfile, one node), the agent
// starts, as soon as that job's exit record is written, one warm runner
// for the next job:
//
//   yard shim ... -- python3 -m trainyard.runner --warm READY_FILE
//
// through the same shim supervisor (JobProcess) a job runs under, with the
// finished job's environment minus the per-job variables (kLateBoundEnv),
// in a folder holding a cached copy of that job's runner package. The
// runner imports TensorFlow, writes READY_FILE ({"framework", "import_s",
// "ready_at"}) and blocks reading one request line from its stdin, the
// agent's end of a socketpair:
//
//   {"argv": [...], "cwd": "...", "env": {...}}\n
//
// It then replaces its environment with `env`, changes into `cwd`, points
// stdin at /dev/null and runs `argv` (the job's runner arguments) exactly
// as a cold runner would; EOF instead of a request makes it exit 0.
//
// A job is served by the warm runner only when it would have run the same
// code in the same process environment: the same argv shape, a runner file
// with the same SHA-256, and an environment equal to the warm one except
// for kLateBoundEnv (which the runner reads only after the request). Else
// the warm runner is ended and the job starts cold, saying why in its
// output ("yard: cold start: ..."). A served job says
// "yard: warm runner (tensorflow imported 3.2 s ago)". From then on the
// warm runner's JobProcess *is* the job's process: the same output pipe,
// cancel (SIGTERM to the shim, which ends the tree), exit code and folders
// as a cold job. Each warm runner serves one job; the next is started when
// that job ends. Jobs of other kinds (scripts, yard-train, notebooks,
// containers) neither use nor end a waiting warm runner. The pool ends its warm runner when the
// agent stops (the shim's parent-death signal covers an agent that dies).
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/job_process.h"
#include "agent/job_setup.h"
#include "common/thread_annotations.h"

namespace yard {

// Variables of a job's environment that the runner reads only after the
// request, so a warm runner started without them (or with other values)
// still serves the job.
extern const char* const kLateBoundEnv[];

// What a warm runner is started with: a job's spawn options reduced to
// what the import depends on.
struct WarmSpec {
  std::string python = "python3";  // argv[0] of the job
  EnvMap env;                      // without kLateBoundEnv
  std::string runner_hash;         // sha256 hex of trainyard/runner.py
  std::string runner_dir;          // folder holding trainyard/ (the cached copy)
  std::chrono::milliseconds kill_grace{5000};
  std::string shim_executable;       // the `yard` binary
  std::vector<std::string> sandbox;  // the jobs' sandbox (JobSpawnOptions::sandbox)
};

// True when `argv` is `python3 -m trainyard.runner SPEC` (or `python ...`).
bool IsRunnerCommand(const std::vector<std::string>& argv);

// "" when `options` runs the shipped Keras runner in a plain folder (a job
// a warm runner can serve); else why not, for the job's output.
std::string WarmIneligibility(const JobSpawnOptions& options);

// `env` without kLateBoundEnv.
EnvMap WithoutLateBound(const EnvMap& env);

// sha256 hex of `cwd`/trainyard/runner.py, or "" when unreadable.
std::string RunnerHash(const std::string& cwd);

// The names whose values differ between two environments (sorted).
std::vector<std::string> EnvDifferences(const EnvMap& a, const EnvMap& b);

// One started warm runner. Not thread-safe; the pool serializes access.
class WarmRunner {
 public:
  // Spawns the runner (see the file comment). `ready_file` must not exist.
  // REQUIRES: the calling thread outlives the runner and any job it serves.
  static StatusOr<std::unique_ptr<WarmRunner>> Start(const WarmSpec& spec,
                                                     const std::string& ready_file);
  // Ends the runner's tree (SIGTERM, SIGKILL after the grace) and waits.
  ~WarmRunner();

  // "" when this runner can serve `options`; else why not.
  std::string Mismatch(const JobSpawnOptions& options) const;
  // Reads what the runner printed while idle (kept: the last few KiB, see
  // idle_output); false once it has exited.
  bool Poll();
  const std::string& idle_output() const { return idle_output_; }
  // How it ended. REQUIRES: Poll() returned false.
  std::string ExitDescription();
  pid_t pid() const { return process_ ? process_->pid() : -1; }
  // "tensorflow imported 3.2 s ago" or "still importing, started 0.4 s ago".
  std::string Describe() const;
  // Sends the request and returns the process, now the job's. On error
  // (the runner is gone) the runner is spent either way.
  StatusOr<std::unique_ptr<JobProcess>> Hand(const JobSpawnOptions& options);

 private:
  WarmRunner() = default;
  WarmSpec spec_;
  std::string ready_file_;
  std::chrono::steady_clock::time_point started_;
  std::unique_ptr<JobProcess> process_;
  int request_fd_ = -1;  // the agent's end of the runner's stdin
  std::string idle_output_;
};

// Holds at most one warm runner for an agent. Thread-safe.
//
// Runners are spawned on the pool's own thread, which lives as long as the
// pool: Linux sends the parent-death signal when the spawning *thread*
// ends, so neither a job's thread nor the agent's poll thread may spawn a
// process that outlives it. REQUIRES: every JobProcess handed out by Take
// is destroyed before the pool.
class WarmPool {
 public:
  // `dir` (created) holds the cached runner copies and ready files.
  explicit WarmPool(std::string dir);
  ~WarmPool();  // ends the warm runner, if any, and the thread
  WarmPool(const WarmPool&) = delete;
  WarmPool& operator=(const WarmPool&) = delete;

  // After a job ended: when `options` was a job a warm runner
  // can serve, starts (on the pool thread, soon) a warm runner for the
  // next one like it, replacing any other.
  void Prewarm(const JobSpawnOptions& options);
  // For a job about to start with `options`: the warm runner's process,
  // now the job's, or null for a cold start. `*note` gets the line for the
  // job's output ("yard: warm runner (...)\n", "yard: cold start: ...\n")
  // or stays empty when there was no warm runner to talk about.
  std::unique_ptr<JobProcess> Take(const JobSpawnOptions& options, std::string* note);
  // Ends the warm runner now (the agent stops). Later Prewarm calls are ignored.
  void Stop();
  // For tests: waits until no start is pending; false on timeout.
  bool WaitIdle(std::chrono::milliseconds timeout);
  // For tests: the warm runner's shim pid, or -1.
  pid_t warm_pid();

 private:
  void Loop();
  // Both release mu_ while they wait for a process, and take it again
  // before they return.
  void StartPending() REQUIRES(mu_);
  void PollIdle() REQUIRES(mu_);

  const std::string dir_;
  Mutex mu_;
  std::condition_variable cv_;
  bool stopping_ GUARDED_BY(mu_) = false;
  std::optional<WarmSpec> pending_ GUARDED_BY(mu_);  // to start
  bool starting_ GUARDED_BY(mu_) = false;
  std::unique_ptr<WarmRunner> warm_ GUARDED_BY(mu_);
  int started_count_ GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace yard
