#include "providers/agent_spawner.h"

#include <signal.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "common/files.h"
#include "common/process.h"

namespace yard {

std::vector<std::string> LocalSandboxArgs(const std::string& state_dir) {
  std::filesystem::path dir = std::filesystem::absolute(state_dir).lexically_normal();
  if (dir.filename().empty()) dir = dir.parent_path();  // a trailing slash
  return {"--sandbox", "--sandbox-hide", dir.parent_path().string()};
}

StatusOr<int> ProcessAgentSpawner::Start(const AgentLaunchInfo& agent, const std::string& id,
                                         const std::string& dir,
                                         const std::vector<std::string>& extra_args,
                                         const std::vector<std::string>& extra_env) {
  YARD_RETURN_IF_ERROR(MakeDirs(dir));
  std::vector<std::string> argv = {agent.yard_binary, "agent", "--instance", id, "--dir", dir};
  if (!agent.server_url_file.empty()) argv.insert(argv.end(), {"--server-file", agent.server_url_file});
  else argv.insert(argv.end(), {"--server", agent.server_url});
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  // The server's secrets (tokens, cloud keys) stay with the server.
  std::vector<std::string> env = EnvironmentWithoutSecrets();
  env.push_back("YARD_AGENT_TOKEN=" + agent.agent_token);  // this instance's bootstrap
  env.insert(env.end(), extra_env.begin(), extra_env.end());
  return SpawnDetached(argv, env, dir + "/agent.log");
}

bool ProcessAgentSpawner::Alive(int handle, const std::string& id) { return ProcessAlive(handle, id); }

void ProcessAgentSpawner::Stop(int handle, const std::string& id, bool hard) {
  if (!ProcessAlive(handle, id)) return;
  ::kill(handle, hard ? SIGKILL : SIGTERM);
  if (hard) return;
  // The agent ends its job on SIGTERM; make sure it is gone even if stuck.
  std::thread([handle, id] {
    for (int i = 0; i < 100 && ProcessAlive(handle, id); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (ProcessAlive(handle, id)) ::kill(handle, SIGKILL);
  }).detach();
}

}  // namespace yard
