// ShimZygote: the agent's side of the shim's zygote (shim/zygote.h), a
// `yard-shim --zygote` started once that forks each job's shim, so that
// starting a job costs a fork of a small process instead of a posix_spawn
// and an exec of yard-shim.
//
// The shims it forks are this process's children (CLONE_PARENT), children
// of the zygote's owner thread, a thread of this object that lives as long
// as it does: so every guarantee of agent/job_process.h holds as with a
// spawned shim (the agent waits for and signals the shim by pid; the
// shim's parent-death signal follows the agent; see below for the thread).
// A zygote that died (killed, or gone with a bug) is noticed at the next
// start and replaced; a job is never started twice nor unknown to the
// agent (the go pipe of shim/zygote.h).
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <string>
#include <thread>
#include <vector>

#include "common/thread_annotations.h"

namespace yard {

class ShimZygote {
 public:
  // `shim`: the path of yard-shim (or of `yard`, for `yard shim`).
  explicit ShimZygote(std::string shim);
  // Ends the zygote and its owner thread. REQUIRES: no shim it forked is
  // still running (their parent-death signal would fire with the thread).
  ~ShimZygote();
  ShimZygote(const ShimZygote&) = delete;
  ShimZygote& operator=(const ShimZygote&) = delete;

  // Starts the shim `argv` (argv[0] as RunShim's) with environment `env`
  // in `cwd`, its output on `out_fd` (stdout and stderr), its input on
  // `in_fd` (-1: /dev/null) and a sandbox's mount namespace on descriptor
  // 3 when `ns_fd` >= 0. Returns 0 and sets *pid (a child of this process);
  // the errno of a start that failed (ENOENT: no `cwd`); or -1 when the
  // zygote cannot do it (cannot be started, or the request is too large):
  // the caller then spawns the shim itself.
  int Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env,
            const std::string& cwd, int out_fd, int in_fd, int ns_fd, pid_t* pid);

  // The zygote's pid, -1 when none runs (for tests).
  pid_t zygote_pid();

 private:
  // Has the owner thread start a zygote; false when it could not.
  bool StartZygote(MutexLock& lock) REQUIRES(mu_);
  // The zygote is gone or unusable: closes its socket, ends and reaps it.
  void DropZygote() REQUIRES(mu_);
  // One request and its answer: 0 / errno as Spawn, -1 when the zygote is
  // gone (the caller replaces it and asks again).
  int Ask(const std::string& request, const std::vector<int>& fds, pid_t* pid) REQUIRES(mu_);
  void OwnerLoop();

  const std::string shim_;
  Mutex mu_;  // held for a whole Spawn: one request at a time
  std::condition_variable cv_;
  bool start_wanted_ GUARDED_BY(mu_) = false;
  bool stopping_ GUARDED_BY(mu_) = false;
  bool unusable_ GUARDED_BY(mu_) = false;  // a zygote could not be started, or serve
  bool served_ GUARDED_BY(mu_) = false;    // the current zygote has started a shim
  int sock_ GUARDED_BY(mu_) = -1;
  pid_t pid_ GUARDED_BY(mu_) = -1;
  std::thread owner_;  // spawns the zygote: the parent of every shim it forks
};

}  // namespace yard
