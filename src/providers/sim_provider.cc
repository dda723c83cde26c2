#include "providers/sim_provider.h"

#include <algorithm>
#include <cstdio>

#include "common/files.h"

namespace yard {

using Json = nlohmann::json;

namespace {

Json LaunchInfoJson(const AgentLaunchInfo& a) {
  return {{"server_url", a.server_url},
          {"server_url_file", a.server_url_file},
          {"agent_token", a.agent_token},
          {"yard_binary", a.yard_binary},
          {"server_fingerprint", a.server_fingerprint}};
}

// nullopt for a record of another shape.
std::optional<AgentLaunchInfo> LaunchInfoFrom(const Json& j) {
  if (!j.is_object()) return std::nullopt;
  AgentLaunchInfo a;
  for (auto [key, field] :
       {std::pair{"server_url", &a.server_url}, std::pair{"server_url_file", &a.server_url_file},
        std::pair{"agent_token", &a.agent_token}, std::pair{"yard_binary", &a.yard_binary},
        std::pair{"server_fingerprint", &a.server_fingerprint}}) {
    if (!j.contains(key) || !j[key].is_string()) return std::nullopt;
    *field = j[key].get<std::string>();
  }
  return a;
}

}  // namespace

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
  s.ready_at_wall = clock_->Now() + ts.provisioning_delay_s;
  s.agent = agent;
  s.dir = state_dir_ + "/" + inst->id;
  s.options = type.options;
  KeepLaunchRecord(inst->id, s);
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
    if (h.ok()) KeepLaunchRecord(id, s);  // with its pid now
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

void SimProvider::KeepLaunchRecord(const std::string& id, const SimInstance& s) {
  Json record = {{"agent", LaunchInfoJson(s.agent)}, {"ready_at", s.ready_at_wall}};
  if (s.handle > 0) record["pid"] = s.handle;
  Status made = MakeDirs(s.dir);
  Status kept = made.ok()
                    ? WriteFileAtomic(s.dir + "/" + kLaunchRecordFile, record.dump() + "\n", 0600)
                    : made;
  if (!kept.ok())
    std::fprintf(stderr,
                 "yard server: sim: instance %s: its launch record was not kept (%s): a server "
                 "restarted before its agent registers will count it lost\n",
                 id.c_str(), kept.message().c_str());
}

std::optional<SimProvider::SimInstance> SimProvider::FromLaunchRecord(const InstanceRecord& inst) {
  SimInstance s;
  s.dir = inst.info.value("dir", "");
  if (s.dir.empty()) return std::nullopt;
  StatusOr<std::string> text = ReadFile(s.dir + "/" + kLaunchRecordFile);
  if (!text.ok()) return std::nullopt;
  Json record = Json::parse(*text, nullptr, false);
  if (!record.is_object() || !record.contains("agent")) return std::nullopt;
  std::optional<AgentLaunchInfo> agent = LaunchInfoFrom(record["agent"]);
  if (!agent || !record.value("ready_at", Json()).is_number()) return std::nullopt;
  s.agent = *agent;
  s.ready_at_wall = record["ready_at"].get<double>();
  s.ready_at = s.ready_at_wall - t0_;
  if (record.contains("pid") && !record["pid"].is_number_integer()) return std::nullopt;
  s.handle = record.value("pid", 0);
  // Started before the restart: adopted only while that agent still runs.
  if (s.handle > 0 && !spawner_->Alive(s.handle, inst.id)) return std::nullopt;
  return s;
}

bool SimProvider::Adopt(const InstanceRecord& inst) {
  std::optional<SimInstance> s;
  int pid = inst.info.value("pid", 0);  // stored when its agent registered
  if (pid > 0) {
    if (!spawner_->Alive(pid, inst.id)) return false;
    s.emplace();
    s->handle = pid;
    s->dir = inst.info.value("dir", "");
  } else {
    s = FromLaunchRecord(inst);
    if (!s) return false;
  }
  s->type = inst.machine_type;
  s->spot = inst.info.value("market", "") == "spot";
  MutexLock lock(mu_);
  instances_[inst.id] = *s;
  live_by_type_[s->type] += 1;
  return true;
}

}  // namespace yard
