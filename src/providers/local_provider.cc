#include "providers/local_provider.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "common/files.h"
#include "common/process.h"
#include "providers/agent_spawner.h"

namespace yard {

int DetectHostCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return std::max(1, CPU_COUNT(&set));
}

int DetectGpus() {
  if (access("/usr/bin/nvidia-smi", X_OK) != 0) return 0;
  FILE* p = popen("/usr/bin/nvidia-smi -L 2>/dev/null", "r");
  if (!p) return 0;
  int count = 0;
  char line[512];
  while (fgets(line, sizeof(line), p)) if (std::strncmp(line, "GPU ", 4) == 0) ++count;
  pclose(p);
  return count;
}

LocalProvider::LocalProvider(std::string state_dir, int cores, int gpus)
    : state_dir_(std::move(state_dir)), cores_(cores), gpus_(gpus) {}

std::vector<int> LocalProvider::PickFree(const std::set<int>& used, int total, int n) {
  std::vector<int> out;
  for (int i = 0; i < total && static_cast<int>(out.size()) < n; ++i)
    if (!used.count(i)) out.push_back(i);
  return out;
}

int LocalProvider::Available(const MachineType& type) {
  std::lock_guard<std::mutex> lock(mu_);
  int free_cores = cores_ - static_cast<int>(used_cores_.size());
  int free_gpus = gpus_ - static_cast<int>(used_gpus_.size());
  int by_cpu = free_cores / std::max(1, type.cpus);
  int by_gpu = type.gpus > 0 ? free_gpus / type.gpus : by_cpu;
  return std::max(0, std::min(by_cpu, by_gpu));
}

bool LocalProvider::CapacityComesBack(const MachineType& type) const {
  return type.cpus <= cores_ && type.gpus <= gpus_;
}

namespace {

std::string JoinInts(const std::vector<int>& v) {
  std::string s;
  for (int i : v) s += (s.empty() ? "" : ",") + std::to_string(i);
  return s;
}

std::vector<std::string> AgentEnvironment(const AgentLaunchInfo& agent,
                                          const std::vector<int>& gpus, bool gpu_host) {
  std::vector<std::string> env;
  // The server's secrets (tokens, cloud keys) stay with the server.
  for (const std::string& e : EnvironmentWithoutSecrets()) {
    if (e.rfind("CUDA_VISIBLE_DEVICES=", 0) == 0) continue;
    env.push_back(e);
  }
  env.push_back("YARD_AGENT_TOKEN=" + agent.agent_token);  // this instance's bootstrap
  // On a GPU host every instance sees only its own devices; an instance
  // without GPUs sees none rather than all.
  if (gpu_host) env.push_back("CUDA_VISIBLE_DEVICES=" + JoinInts(gpus));
  return env;
}

}  // namespace

Status LocalProvider::Launch(const MachineType& type, const AgentLaunchInfo& agent,
                             InstanceRecord* inst) {
  std::vector<int> cores, gpus;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cores = PickFree(used_cores_, cores_, type.cpus);
    gpus = PickFree(used_gpus_, gpus_, type.gpus);
    if (static_cast<int>(cores.size()) < type.cpus || static_cast<int>(gpus.size()) < type.gpus)
      return ResourceExhausted("no free local capacity for " + type.name);
    used_cores_.insert(cores.begin(), cores.end());
    used_gpus_.insert(gpus.begin(), gpus.end());
    held_[inst->id] = {cores, gpus};
  }
  std::string dir = state_dir_ + "/" + inst->id;
  Status s = MakeDirs(dir);
  std::vector<std::string> argv = {agent.yard_binary, "agent", "--instance", inst->id,
                                   "--dir", dir, "--cpus", JoinInts(cores)};
  std::vector<std::string> confine = LocalSandboxArgs(state_dir_);
  argv.insert(argv.end(), confine.begin(), confine.end());
  if (!agent.server_url_file.empty()) {
    argv.insert(argv.end(), {"--server-file", agent.server_url_file});
  } else {
    argv.insert(argv.end(), {"--server", agent.server_url});
  }
  StatusOr<int> pid = s.ok() ? SpawnDetached(argv, AgentEnvironment(agent, gpus, gpus_ > 0),
                                             dir + "/agent.log")
                             : StatusOr<int>(s);
  if (!pid.ok()) {
    Release(inst->id);
    return pid.status().WithContext("starting the local agent for " + inst->id);
  }
  inst->info.update({{"pid", *pid}, {"dir", dir}, {"cores", cores}, {"gpus", gpus}});
  return Status::Ok();
}

void LocalProvider::Release(const std::string& instance_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = held_.find(instance_id);
  if (it == held_.end()) return;
  for (int c : it->second.first) used_cores_.erase(c);
  for (int g : it->second.second) used_gpus_.erase(g);
  held_.erase(it);
}

Status LocalProvider::Terminate(const InstanceRecord& inst) {
  Release(inst.id);
  int pid = inst.info.value("pid", 0);
  std::string dir = inst.info.value("dir", "");
  std::string marker = inst.id;
  bool alive = pid > 0 && ProcessAlive(pid, marker);
  if (alive) ::kill(pid, SIGTERM);
  // The agent ends its job on SIGTERM; make sure it is gone even if stuck,
  // then free the disk it used.
  std::thread([pid, marker, dir, alive] {
    for (int i = 0; alive && i < 100 && ProcessAlive(pid, marker); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (alive && ProcessAlive(pid, marker)) ::kill(pid, SIGKILL);
    for (int i = 0; alive && i < 50 && ProcessAlive(pid, marker); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!dir.empty() && !(pid > 0 && ProcessAlive(pid, marker))) ClearInstanceFolder(dir);
  }).detach();
  return Status::Ok();
}

void ClearInstanceFolder(const std::string& dir) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    if (name == "agent.log" || name == "spool") continue;
    std::filesystem::remove_all(entry.path(), ec);
  }
}

bool LocalProvider::IsAlive(const InstanceRecord& inst) {
  int pid = inst.info.value("pid", 0);
  return pid > 0 && ProcessAlive(pid, inst.id);
}

bool LocalProvider::Adopt(const InstanceRecord& inst) {
  if (!IsAlive(inst)) return false;
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int> cores = inst.info.value("cores", std::vector<int>{});
  std::vector<int> gpus = inst.info.value("gpus", std::vector<int>{});
  used_cores_.insert(cores.begin(), cores.end());
  used_gpus_.insert(gpus.begin(), gpus.end());
  held_[inst.id] = {cores, gpus};
  return true;
}

}  // namespace yard
