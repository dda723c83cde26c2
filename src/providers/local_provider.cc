#include "providers/local_provider.h"

#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/files.h"

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

LocalProvider::LocalProvider(std::string state_dir, int cores, int gpus, AgentSpawner* spawner)
    : state_dir_(std::move(state_dir)), cores_(cores), gpus_(gpus), spawner_(spawner) {}

std::vector<int> LocalProvider::PickFree(const std::set<int>& used, int total, int n) {
  std::vector<int> out;
  for (int i = 0; i < total && static_cast<int>(out.size()) < n; ++i)
    if (!used.count(i)) out.push_back(i);
  return out;
}

int LocalProvider::Available(const MachineType& type) {
  MutexLock lock(mu_);
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

}  // namespace

Status LocalProvider::Launch(const MachineType& type, const AgentLaunchInfo& agent,
                             InstanceRecord* inst) {
  std::vector<int> cores, gpus;
  {
    MutexLock lock(mu_);
    cores = PickFree(used_cores_, cores_, type.cpus);
    gpus = PickFree(used_gpus_, gpus_, type.gpus);
    if (static_cast<int>(cores.size()) < type.cpus || static_cast<int>(gpus.size()) < type.gpus)
      return ResourceExhausted("no free local capacity for " + type.name);
    used_cores_.insert(cores.begin(), cores.end());
    used_gpus_.insert(gpus.begin(), gpus.end());
    held_[inst->id] = {cores, gpus};
  }
  std::string dir = state_dir_ + "/" + inst->id;
  std::vector<std::string> args = {"--cpus", JoinInts(cores)};
  std::vector<std::string> confine = LocalSandboxArgs(state_dir_);
  args.insert(args.end(), confine.begin(), confine.end());
  // On a GPU host every instance sees only its own devices; an instance
  // without GPUs sees none rather than all.
  std::vector<std::string> env;
  if (gpus_ > 0) env.push_back("CUDA_VISIBLE_DEVICES=" + JoinInts(gpus));
  StatusOr<int> pid = spawner_->Start(agent, inst->id, dir, args, env);
  if (!pid.ok()) {
    Release(inst->id);
    return pid.status().WithContext("starting the local agent for " + inst->id);
  }
  inst->info.update({{"pid", *pid}, {"dir", dir}, {"cores", cores}, {"gpus", gpus}});
  return Status::Ok();
}

void LocalProvider::Release(const std::string& instance_id) {
  MutexLock lock(mu_);
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
  // Its disk is freed once the agent (which ends its job first) is gone.
  std::function<void()> clear;
  if (!dir.empty()) clear = [dir] { ClearInstanceFolder(dir); };
  if (pid > 0) spawner_->Stop(pid, inst.id, /*hard=*/false, std::move(clear));
  else if (clear) clear();
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
  return pid > 0 && spawner_->Alive(pid, inst.id);
}

bool LocalProvider::Adopt(const InstanceRecord& inst) {
  if (!IsAlive(inst)) return false;
  MutexLock lock(mu_);
  std::vector<int> cores = inst.info.value("cores", std::vector<int>{});
  std::vector<int> gpus = inst.info.value("gpus", std::vector<int>{});
  used_cores_.insert(cores.begin(), cores.end());
  used_gpus_.insert(gpus.begin(), gpus.end());
  held_[inst.id] = {cores, gpus};
  return true;
}

}  // namespace yard
