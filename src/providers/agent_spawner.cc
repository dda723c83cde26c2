#include "providers/agent_spawner.h"

#include <signal.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <set>
#include <thread>

#include "common/files.h"
#include "common/process.h"

namespace yard {

std::vector<std::string> LocalSandboxArgs(const std::string& state_dir) {
  std::filesystem::path dir = std::filesystem::absolute(state_dir).lexically_normal();
  if (dir.filename().empty()) dir = dir.parent_path();  // a trailing slash
  std::string home = dir.parent_path().string();
  return {"--sandbox", "--sandbox-hide", home, "--server-blobs", home + "/blobs"};
}

namespace {

std::string EnvName(const std::string& key_value) {
  return key_value.substr(0, key_value.find('='));
}

std::vector<std::string> AgentEnvironment(const AgentLaunchInfo& agent,
                                          const std::vector<std::string>& extra_env) {
  std::set<std::string> replaced = {"CUDA_VISIBLE_DEVICES", "YARD_AGENT_TOKEN"};
  for (const std::string& e : extra_env) replaced.insert(EnvName(e));
  std::vector<std::string> env;
  for (const std::string& e : EnvironmentWithoutSecrets())
    if (!replaced.count(EnvName(e))) env.push_back(e);
  env.push_back("YARD_AGENT_TOKEN=" + agent.agent_token);  // this instance's bootstrap
  SetAgentTlsEnvironment(agent, &env);
  env.insert(env.end(), extra_env.begin(), extra_env.end());
  return env;
}

// Polls every 100 ms for up to `tries` looks; true once `handle` is gone.
bool WaitGone(int handle, const std::string& id, int tries) {
  for (int i = 0; i < tries; ++i) {
    if (!ProcessAlive(handle, id)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return !ProcessAlive(handle, id);
}

}  // namespace

StatusOr<int> ProcessAgentSpawner::Start(const AgentLaunchInfo& agent, const std::string& id,
                                         const std::string& dir,
                                         const std::vector<std::string>& extra_args,
                                         const std::vector<std::string>& extra_env) {
  YARD_RETURN_IF_ERROR(MakeDirs(dir));
  std::vector<std::string> argv = {agent.yard_binary, "agent", "--instance", id, "--dir", dir};
  if (!agent.server_url_file.empty())
    argv.insert(argv.end(), {"--server-file", agent.server_url_file});
  else
    argv.insert(argv.end(), {"--server", agent.server_url});
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  std::vector<std::string> env = AgentEnvironment(agent, extra_env);
  return SpawnDetached(argv, env, dir + "/agent.log");
}

bool ProcessAgentSpawner::Alive(int handle, const std::string& id) {
  return ProcessAlive(handle, id);
}

void ProcessAgentSpawner::Stop(int handle, const std::string& id, bool hard,
                               std::function<void()> once_gone) {
  bool alive = ProcessAlive(handle, id);
  if (alive) ::kill(handle, hard ? SIGKILL : SIGTERM);
  if (!alive && !once_gone) return;
  std::thread([handle, id, alive, once_gone = std::move(once_gone)] {
    if (alive && !WaitGone(handle, id, 100)) ::kill(handle, SIGKILL);  // stuck: ~10 s
    if (alive && !WaitGone(handle, id, 50)) return;  // uninterruptible: leave it be
    if (once_gone) once_gone();
  }).detach();
}

}  // namespace yard
