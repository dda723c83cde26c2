// JobProcess: runs one job's command so that everything it starts can be
// ended, and its output read as one ordered stream.
//
// The agent does not exec the job directly. It execs a small supervisor,
// `yard-shim [--grace-ms N] [--parent-pid P] -- ARGV...` (src/shim; the
// `yard-shim` beside `yard`, or `yard shim` when there is none), or has its
// shim zygote fork one (JobSpawnOptions::zygote, shim_zygote.h; the same
// supervisor, the agent's child either way), which:
//   - makes itself a child subreaper (PR_SET_CHILD_SUBREAPER), so children
//     that escape with setsid() or double-fork are re-parented to it;
//   - asks for SIGTERM when the agent dies (PR_SET_PDEATHSIG), and ends at
//     once if the agent (--parent-pid) was already gone when it asked;
//   - forks the command in a new process group, with stdout and stderr both
//     on the one pipe the agent reads (one pipe keeps their relative order);
//   - when the command exits, ends every remaining descendant (SIGTERM, then
//     SIGKILL after the grace period) and exits with the command's status:
//     its exit code, or, if a signal killed it, death by that same signal
//     (with core dumps off), so that the agent's waitpid sees how it ended;
//   - on SIGTERM, SIGINT or SIGHUP (cancel), does the same at once.
// The shim exits only once no descendant is left (unless one outlives
// SIGKILL, stuck in the kernel, for 5 s), so EOF on the output pipe and the
// shim's exit both mean the whole tree is gone.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "shim/proc_tree.h"  // ListDescendants
#include "shim/shim.h"       // RunShim, for `yard shim`

namespace yard {

class ShimZygote;  // agent/shim_zygote.h

struct JobSpawnOptions {
  std::vector<std::string> argv;               // argv[0] looked up on PATH
  std::map<std::string, std::string> env;      // the complete environment
  std::string cwd;                             // empty: the agent's own
  std::chrono::milliseconds kill_grace{5000};  // SIGTERM -> SIGKILL
  // Path of `yard` (its sibling `yard-shim` is used when present, else
  // `yard shim`) or of `yard-shim` itself.
  std::string shim_executable;
  // >= 0: the command's stdin (dup'ed; the caller keeps and closes its
  // own). A warm runner reads its request here (warm_runner.h).
  int stdin_fd = -1;
  // Non-empty: the command runs confined, under this prefix (SandboxPrefix,
  // sandbox.h), started by the shim in --sandboxed mode.
  std::vector<std::string> sandbox;
  // >= 0: the command runs confined by entering a prepared sandbox
  // (sandbox_template.h) instead of a bwrap of its own: a copy of this
  // mount namespace (the descriptor is dup'ed for the shim; the caller keeps
  // its own), with these tmpfs mount points made anew. Takes precedence
  // over `sandbox`, which a caller may keep set (warm runners match on it).
  int sandbox_ns_fd = -1;
  std::vector<std::string> sandbox_fresh;
  // Non-null: the shim is forked by this zygote (shim_zygote.h) instead of
  // spawned, when it can; the job is the same either way.
  ShimZygote* zygote = nullptr;
};

// The shim's argv up to its options for a given `shim_executable` (see
// JobSpawnOptions): {yard-shim} or {yard, "shim"}.
std::vector<std::string> ShimCommand(const std::string& shim_executable);

// File name of the shim executable, installed beside `yard`.
inline constexpr const char* kShimName = "yard-shim";

// How a job's command ended.
struct ExitInfo {
  int exit_code = 0;             // exit status, or 128 + signal when killed
  int signal = 0;                // non-zero if the command died from a signal
  std::string Describe() const;  // "exit code 3", "killed by signal 9 (Killed)"
};

// One running job. Not thread-safe: use each object from one thread.
class JobProcess {
 public:
  // Starts the shim and the command. The returned object owns the pipe.
  // The agent side spawns the shim (posix_spawn, safe in a threaded process)
  // already in `cwd`, with stdin on /dev/null (or `stdin_fd`), default
  // signal dispositions and an empty signal mask; a missing shim or cwd is
  // an error here. A
  // command that cannot be exec'd is not: the job then ends with exit code
  // 127 and "yard: cannot run 'X': <reason>" in its output.
  // REQUIRES: the calling thread outlives the job (Linux sends the parent-
  // death signal when the spawning *thread* exits); SIGCHLD not ignored.
  static StatusOr<std::unique_ptr<JobProcess>> Start(const JobSpawnOptions& options);
  // Closes the pipe; if the shim is still running, SIGKILLs the whole tree
  // at once (no grace) and reaps the shim.
  ~JobProcess();
  JobProcess(const JobProcess&) = delete;
  JobProcess& operator=(const JobProcess&) = delete;

  // File descriptor of the combined stdout/stderr pipe (non-blocking). The
  // caller must keep draining it: a job blocked on a full pipe never ends.
  int output_fd() const { return output_fd_; }
  // Reads what is available (at most 1 MiB per call) into `out` (appends).
  // Returns false at EOF (or on a read error, which ends the stream too).
  bool ReadAvailable(std::string* out);
  // Non-blocking: the exit info once the shim has exited.
  std::optional<ExitInfo> TryWait();
  // Blocks until the shim exits.
  ExitInfo Wait();
  // Cancel: SIGTERM to the shim, which ends the whole tree (SIGKILL after
  // the grace). Safe to call more than once and after exit.
  void Terminate();
  // Sends `sig` to the command's process group (and to any other process
  // group the shim's direct children lead: ones re-parented to it), not to
  // the shim. For signals a job is meant to catch (the spot interruption
  // notice's SIGUSR1). Confined (JobSpawnOptions::sandbox), the same for
  // the command inside the sandbox. NotFound when the command is gone.
  Status Signal(int sig);
  pid_t pid() const { return shim_pid_; }

 private:
  JobProcess() = default;
  pid_t shim_pid_ = -1;
  // Processes between the shim and the command: bwrap and its init (2), or
  // the init of an entered sandbox (1).
  int sandbox_levels_ = 0;
  int output_fd_ = -1;
  std::optional<ExitInfo> exit_;
};

}  // namespace yard
