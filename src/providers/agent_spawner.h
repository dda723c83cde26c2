// AgentSpawner: how the sim provider starts, watches and stops the agents it
// runs as processes on this host. The real one spawns detached processes;
// controller_test.cc uses a fake that records the calls. LocalProvider does
// not use it yet: it spawns and stops its agents itself (local_provider.cc,
// its own SIGTERM -> wait -> SIGKILL), a second copy of Stop below.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "providers/provider.h"

namespace yard {

// `yard agent` flags that confine the jobs of an agent on this host
// (agent/sandbox.h), for an instance folder under `state_dir`, which is
// $YARD_HOME/instances: the whole of YARD_HOME stays hidden from jobs.
std::vector<std::string> LocalSandboxArgs(const std::string& state_dir);

class AgentSpawner {
 public:
  virtual ~AgentSpawner() = default;
  // Starts `yard agent` for instance `id` with its folder `dir`; `extra_args`
  // and `extra_env` are appended. Returns a pid-like handle.
  virtual StatusOr<int> Start(const AgentLaunchInfo& agent, const std::string& id,
                              const std::string& dir, const std::vector<std::string>& extra_args,
                              const std::vector<std::string>& extra_env) = 0;
  virtual bool Alive(int handle, const std::string& id) = 0;
  // hard: SIGKILL at once. Otherwise SIGTERM, and a detached thread sends
  // SIGKILL if the process is still alive ~10 s later. Returns at once.
  virtual void Stop(int handle, const std::string& id, bool hard) = 0;
};

// Real agents: detached `yard agent` processes.
class ProcessAgentSpawner : public AgentSpawner {
 public:
  StatusOr<int> Start(const AgentLaunchInfo& agent, const std::string& id, const std::string& dir,
                      const std::vector<std::string>& extra_args,
                      const std::vector<std::string>& extra_env) override;
  bool Alive(int handle, const std::string& id) override;
  void Stop(int handle, const std::string& id, bool hard) override;
};

}  // namespace yard
