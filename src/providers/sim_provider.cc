#include "providers/sim_provider.h"

#include <algorithm>

namespace yard {

using Json = nlohmann::json;

SimProvider::SimProvider(SimScenario scenario, std::string state_dir, const Clock* clock,
                         AgentSpawner* spawner)
    : scenario_(std::move(scenario)),
      state_dir_(std::move(state_dir)),
      clock_(clock),
      spawner_(spawner),
      t0_(clock->Now()) {}

std::set<std::string> SimProvider::JobSettingKeys(const MachineType& type) const {
  auto it = scenario_.types.find(type.name);
  return it == scenario_.types.end() ? std::set<std::string>{} : it->second.settings;
}

Json SimProvider::LaunchedOptions(const std::string& instance_id) {
  MutexLock lock(mu_);
  auto it = instances_.find(instance_id);
  return it == instances_.end() ? Json() : it->second.options;
}

int SimProvider::Available(const MachineType& type) {
  auto it = scenario_.types.find(type.name);
  if (it == scenario_.types.end()) return 0;
  MutexLock lock(mu_);
  auto live = live_by_type_.find(type.name);
  int n = live == live_by_type_.end() ? 0 : live->second;
  return std::max(0, it->second.CapacityAt(ScenarioTime()) - n);
}

Status SimProvider::Launch(const MachineType& type, const AgentLaunchInfo& agent,
                           InstanceRecord* inst) {
  if (Available(type) <= 0)
    return ResourceExhausted("the simulated cloud has no capacity for " + type.name + " now");
  const SimTypeScenario& ts = scenario_.types.at(type.name);
  MutexLock lock(mu_);
  SimInstance s;
  s.type = type.name;
  s.spot = inst->info.value("market", "") == "spot";
  s.ready_at = ScenarioTime() + ts.provisioning_delay_s;
  s.agent = agent;
  s.dir = state_dir_ + "/" + inst->id;
  s.options = type.options;
  instances_[inst->id] = s;
  live_by_type_[s.type] += 1;
  ++launches_;
  inst->info["dir"] = s.dir;
  inst->info["ready_at_s"] = s.ready_at;
  return Status::Ok();
}

void SimProvider::Tick(double now) {
  MutexLock lock(mu_);
  double t = now - t0_;
  for (auto& [id, s] : instances_) {
    if (s.handle || s.ready_at > t) continue;
    StatusOr<int> h = spawner_->Start(s.agent, id, s.dir, LocalSandboxArgs(state_dir_), {});
    s.handle = h.ok() ? *h : -1;
    if (!h.ok())
      interrupted_.push_back(
          {id, "the simulated cloud could not start it: " + h.status().message()});
  }
  for (const auto& [type, ts] : scenario_.types) {
    size_t& next = next_interruption_[type];
    while (next < ts.interruptions.size() && ts.interruptions[next] <= t) {
      // The oldest started spot instance of the type is taken.
      for (auto& [id, s] : instances_)
        if (s.type == type && s.spot && s.handle > 0) {
          InterruptLocked(id, "spot interruption (scenario time " +
                                  std::to_string(static_cast<int>(ts.interruptions[next])) + " s)");
          break;
        }
      ++next;
    }
  }
}

void SimProvider::InterruptLocked(std::string id, const std::string& reason) {
  auto it = instances_.find(id);
  if (it == instances_.end()) return;
  if (it->second.handle > 0) spawner_->Stop(it->second.handle, id, /*hard=*/true, {});
  live_by_type_[it->second.type] -= 1;
  instances_.erase(it);
  interrupted_.push_back({id, reason});
}

Status SimProvider::InterruptNow(const std::string& instance_id, const std::string& reason) {
  MutexLock lock(mu_);
  if (!instances_.count(instance_id))
    return NotFound("no simulated instance '" + instance_id + "'");
  InterruptLocked(instance_id, reason);
  return Status::Ok();
}

std::vector<Interruption> SimProvider::TakeInterruptions() {
  MutexLock lock(mu_);
  return std::exchange(interrupted_, {});
}

Status SimProvider::Terminate(const InstanceRecord& inst) {
  MutexLock lock(mu_);
  auto it = instances_.find(inst.id);
  if (it == instances_.end()) return Status::Ok();
  if (it->second.handle > 0) spawner_->Stop(it->second.handle, inst.id, /*hard=*/false, {});
  live_by_type_[it->second.type] -= 1;
  instances_.erase(it);
  return Status::Ok();
}

bool SimProvider::IsAlive(const InstanceRecord& inst) {
  MutexLock lock(mu_);
  auto it = instances_.find(inst.id);
  if (it == instances_.end()) return false;
  return it->second.handle == 0 ||
         (it->second.handle > 0 && spawner_->Alive(it->second.handle, inst.id));
}

Json SimProvider::KnownInfo(const InstanceRecord& inst) {
  MutexLock lock(mu_);
  auto it = instances_.find(inst.id);
  if (it == instances_.end() || it->second.handle <= 0) return Json::object();
  return {{"pid", it->second.handle}};
}

bool SimProvider::Adopt(const InstanceRecord& inst) {
  int pid = inst.info.value("pid", 0);
  if (pid <= 0 || !spawner_->Alive(pid, inst.id)) return false;
  MutexLock lock(mu_);
  SimInstance s;
  s.type = inst.machine_type;
  s.spot = inst.info.value("market", "") == "spot";
  s.handle = pid;
  s.dir = inst.info.value("dir", "");
  instances_[inst.id] = s;
  live_by_type_[s.type] += 1;
  return true;
}

}  // namespace yard
