#include "providers/local_provider.h"

#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/files.h"
#include "common/frames.h"

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
  while (fgets(line, sizeof(line), p))
    if (std::strncmp(line, "GPU ", 4) == 0) ++count;
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
  // And the spools other ended instances kept: records their server lacked
  // then may be ones it holds, or will never take, now (a requeued job moved on).
  std::vector<std::string> ended = delivered_ ? EndedFolders() : std::vector<std::string>{};
  if (!dir.empty()) {
    clear = [dir, ended, delivered = delivered_] {
      ClearInstanceFolder(dir, delivered);
      for (const std::string& d : ended) ClearDeliveredSpool(d + "/spool", delivered);
    };
  }
  if (pid > 0)
    spawner_->Stop(pid, inst.id, /*hard=*/false, std::move(clear));
  else if (clear)
    clear();
  return Status::Ok();
}

std::optional<SpoolFileInfo> ReadSpoolFileInfo(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  SpoolFileInfo info;
  FrameReader reader;
  std::string block(1 << 20, '\0');
  bool header = false;
  while (in.read(block.data(), static_cast<std::streamsize>(block.size())) || in.gcount() > 0) {
    reader.Feed(std::string_view(block.data(), static_cast<size_t>(in.gcount())));
    while (std::optional<Frame> f = reader.Next()) {
      if (header) {
        ++info.records;
        continue;
      }
      Json j = Json::parse(f->payload, nullptr, /*allow_exceptions=*/false);
      if (f->tag != frame_tag::kJson || !j.is_object() || j.value("yard_spool", 0) != 2 ||
          !j["job"].is_string() || !j["attempt"].is_number_integer())
        return std::nullopt;
      info.job = j["job"];
      info.attempt = j["attempt"];
      header = true;
    }
    if (reader.corrupt()) break;  // what follows was never a record (a torn end)
  }
  if (!header) return std::nullopt;
  return info;
}

std::vector<std::string> LocalProvider::EndedFolders() {
  std::vector<std::string> out;
  MutexLock lock(mu_);
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(state_dir_, ec)) {
    std::string id = entry.path().filename().string();
    if (!held_.count(id) && std::filesystem::is_directory(entry.path() / "spool", ec))
      out.push_back(entry.path().string());
  }
  return out;
}

void ClearDeliveredSpool(const std::string& spool, const SpoolDelivered& delivered) {
  if (!delivered) return;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(spool, ec)) {
    if (entry.path().extension() != ".spool") continue;
    std::optional<SpoolFileInfo> info = ReadSpoolFileInfo(entry.path().string());
    if (!info) continue;
    int64_t held = delivered(info->job, info->attempt);
    if (held >= 0 && info->records <= held) std::filesystem::remove(entry.path(), ec);
  }
  std::filesystem::remove(spool, ec);  // only when empty
}

void ClearInstanceFolder(const std::string& dir, const SpoolDelivered& delivered) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    if (name == "agent.log") continue;
    if (name == "spool") {
      ClearDeliveredSpool(entry.path().string(), delivered);
      continue;
    }
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
