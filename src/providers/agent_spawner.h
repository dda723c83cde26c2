// AgentSpawner: how the local and sim providers start, watch and stop the
// agents they run as processes on this host. The real one spawns detached
// processes; controller_test.cc and local_provider_test.cc use fakes that
// record the calls.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "common/status.h"
#include "providers/provider.h"

namespace yard {

// `yard agent` flags for an agent on the server's host, for an instance
// folder under `state_dir`, which is $YARD_HOME/instances: its jobs are
// confined (agent/sandbox.h; the whole of YARD_HOME stays hidden from
// them), and it copies bundle chunks from the server's blob store,
// $YARD_HOME/blobs, instead of fetching them (agent/chunk_cache.h).
std::vector<std::string> LocalSandboxArgs(const std::string& state_dir);

class AgentSpawner {
 public:
  virtual ~AgentSpawner() = default;
  // Starts `yard agent` for instance `id` with its folder `dir`; `extra_args`
  // are appended to its command line; `extra_env` (KEY=VALUE) is added to
  // the environment, replacing an inherited variable of the same name.
  // Returns a pid-like handle.
  virtual StatusOr<int> Start(const AgentLaunchInfo& agent, const std::string& id,
                              const std::string& dir, const std::vector<std::string>& extra_args,
                              const std::vector<std::string>& extra_env) = 0;
  virtual bool Alive(int handle, const std::string& id) = 0;
  // hard: SIGKILL at once. Otherwise SIGTERM (the agent ends its job), and
  // SIGKILL if the process is still alive ~10 s later. Returns at once; the
  // waiting (a look every 100 ms) happens on a detached thread, which then
  // calls `once_gone` (if set) when the process is gone — also when it was
  // gone already. Never while it still runs: a process that outlives
  // SIGKILL by ~5 s more (stuck in the kernel) is left be, and `once_gone`
  // is not called at all.
  virtual void Stop(int handle, const std::string& id, bool hard,
                    std::function<void()> once_gone) = 0;
};

// Real agents: detached `yard agent` processes, with this process's
// environment minus its secrets (the server's tokens and cloud keys stay with
// the server) and minus CUDA_VISIBLE_DEVICES (the provider says which devices
// an instance has), plus the instance's bootstrap token.
class ProcessAgentSpawner : public AgentSpawner {
 public:
  StatusOr<int> Start(const AgentLaunchInfo& agent, const std::string& id, const std::string& dir,
                      const std::vector<std::string>& extra_args,
                      const std::vector<std::string>& extra_env) override;
  bool Alive(int handle, const std::string& id) override;
  void Stop(int handle, const std::string& id, bool hard, std::function<void()> once_gone) override;
};

}  // namespace yard
