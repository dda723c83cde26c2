// JobProcess: runs one job's command so that everything it starts can be
// ended, and its output read as one ordered stream.
//
// The agent does not exec the job directly. It execs a small supervisor,
// `yard shim -- ARGV...` (this same binary; see RunShim), which:
//   - makes itself a child subreaper (PR_SET_CHILD_SUBREAPER), so children
//     that escape with setsid() or double-fork are re-parented to it;
//   - asks for SIGTERM when the agent dies (PR_SET_PDEATHSIG);
//   - forks the command in a new process group, with stdout and stderr both
//     on the one pipe the agent reads (one pipe keeps their relative order);
//   - when the command exits, ends every remaining descendant (SIGTERM, then
//     SIGKILL after the grace period) and exits with the command's status;
//   - on SIGTERM (cancel), does the same at once.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace yard {

struct JobSpawnOptions {
  std::vector<std::string> argv;              // argv[0] looked up on PATH
  std::map<std::string, std::string> env;     // the complete environment
  std::string cwd;
  std::chrono::milliseconds kill_grace{5000};  // SIGTERM -> SIGKILL
  std::string shim_executable;                 // path of the `yard` binary
};

// How a job's command ended.
struct ExitInfo {
  int exit_code = 0;    // exit status, or 128 + signal when killed
  int signal = 0;       // non-zero if the command died from a signal
  std::string Describe() const;  // "exit code 3", "killed by signal 9 (Killed)"
};

class JobProcess {
 public:
  // Starts the shim and the command. The returned object owns the pipe.
  static StatusOr<std::unique_ptr<JobProcess>> Start(const JobSpawnOptions& options);
  ~JobProcess();  // closes the pipe; kills the tree if still running

  // File descriptor of the combined stdout/stderr pipe (non-blocking).
  int output_fd() const { return output_fd_; }
  // Reads what is available into `out` (appends). Returns false at EOF.
  bool ReadAvailable(std::string* out);
  // Non-blocking: the exit info once the shim has exited.
  std::optional<ExitInfo> TryWait();
  // Blocks until the shim exits.
  ExitInfo Wait();
  // Cancel: SIGTERM to the shim, which ends the whole tree (SIGKILL after
  // the grace). Safe to call more than once and after exit.
  void Terminate();
  pid_t pid() const { return shim_pid_; }

 private:
  JobProcess() = default;
  pid_t shim_pid_ = -1;
  int output_fd_ = -1;
  std::optional<ExitInfo> exit_;
};

// Entry point of `yard shim [--grace-ms N] -- ARGV...`. Returns the process
// exit code. Never returns on exec success of the command (the shim itself
// stays as the supervisor and returns the command's status).
int RunShim(int argc, char** argv);

// All descendants of `root` found by walking /proc (children before
// grandchildren). Exposed for tests.
std::vector<pid_t> ListDescendants(pid_t root);

}  // namespace yard
