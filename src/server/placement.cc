// The scheduler pass: quota waits, reuse of warm instances, ordered
// fallback between machine types, and assignment. See controller.h for the
// rules; every decision is an event on the job's stream.
#include <algorithm>

#include "server/controller.h"
#include "server/job_events.h"

namespace yard {
namespace {

double SpecNumber(const JobRecord& job, const char* key, double fallback) {
  return job.spec.value(key, fallback);
}

std::vector<MachineRequest> RequestsOf(const JobRecord& job) {
  std::vector<MachineRequest> out;
  for (const auto& m : job.spec["machines"]) {
    StatusOr<MachineRequest> r = ParseMachineRequest(m.get<std::string>());
    if (r.ok()) out.push_back(*r);
  }
  return out;
}

std::string Ordinal(int n) {
  const char* suffix = (n % 100 >= 11 && n % 100 <= 13) ? "th"
                       : n % 10 == 1 ? "st" : n % 10 == 2 ? "nd" : n % 10 == 3 ? "rd" : "th";
  return std::to_string(n) + suffix;
}

}  // namespace

const Quota& Controller::QuotaFor(const std::string& user) const {
  auto it = options_.user_quotas.find(user);
  return it == options_.user_quotas.end() ? options_.quota : it->second;
}

int Controller::ActiveJobs(const std::string& user) const {
  auto it = active_jobs_of_.find(user);
  return it == active_jobs_of_.end() ? 0 : it->second;
}

int Controller::ActiveInstances(const std::string& user) const {
  auto it = instances_of_.find(user);
  return it == instances_of_.end() ? 0 : it->second;
}

void Controller::CountJob(const JobRecord& job, const std::string& old_state) {
  int delta = int(job_state::IsActive(job.state)) - int(job_state::IsActive(old_state));
  if (delta) active_jobs_of_[job.user] += delta;
  if (job.state == job_state::kWaiting) waiting_.insert({job.created_at, job.id});
  else waiting_.erase({job.created_at, job.id});
}

void Controller::IndexInstance(const InstanceRecord& inst) {
  auto old = free_entry_.find(inst.id);
  if (old != free_entry_.end()) {
    free_[old->second.first].erase({old->second.second, inst.id});
    free_entry_.erase(old);
  }
  bool free = (inst.state == instance_state::kIdle || inst.state == instance_state::kCooling) &&
              inst.job_id.empty() && instances_.count(inst.id);
  if (!free) return;
  FreeKey key{inst.user, inst.machine_type};
  free_[key].insert({inst.state_since, inst.id});
  free_entry_[inst.id] = {key, inst.state_since};
}

void Controller::AddInstance(const InstanceRecord& inst) {
  instances_[inst.id] = inst;
  instances_of_[inst.user] += 1;
}

void Controller::EraseInstance(const std::string& id) {
  auto it = instances_.find(id);
  if (it == instances_.end()) return;
  instances_of_[it->second.user] -= 1;
  instances_.erase(it);
  IndexInstance(InstanceRecord{.id = id});  // drops its free_ entry
  heartbeats_.erase(id);
}

std::string Controller::WaitingPlace(const JobRecord& job) const {
  int place = 1;
  for (const auto& [created, id] : waiting_) {
    if (created >= job.created_at) break;
    place += jobs_.at(id).user == job.user;
  }
  return Ordinal(place) + " in line";
}

void Controller::Pass() {
  auto started = std::chrono::steady_clock::now();
  double now = clock_->Now();
  for (const auto& [name, p] : providers_) {
    p->Tick(now);
    for (const Interruption& it : p->TakeInterruptions()) {
      auto inst = instances_.find(it.instance_id);
      if (inst != instances_.end()) MarkLost(inst->second, it.reason, /*preempted=*/true);
    }
  }
  // Liveness and cooling deadlines are coarse: checking them on every pass
  // would make each placement pay O(instances).
  auto steady = std::chrono::steady_clock::now();
  if (steady - last_monitor_ >= std::chrono::milliseconds(100)) {
    last_monitor_ = steady;
    MonitorInstances();
  }
  if (!waiting_.empty()) CheckWaitingJobs();
  PlaceQueuedJobs();
  stats_.passes++;
  stats_.pass_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
}

void Controller::CheckWaitingJobs() {
  double now = clock_->Now();
  std::vector<JobRecord*> waiting;
  for (const auto& [created, id] : waiting_) waiting.push_back(&jobs_.at(id));
  for (JobRecord* job : waiting) {
    if (now < job->sched.value("next_check", 0.0)) continue;
    double since = job->sched.value("waiting_since", job->created_at);
    double give_up = SpecNumber(*job, "wait_new_job_s", -1);
    if (ActiveJobs(job->user) < QuotaFor(job->user).max_active_jobs) {
      job->state = job_state::kRequesting;
      CountJob(*job, job_state::kWaiting);
      job->message.clear();
      job->updated_at = now;
      LogError(AppendJobEvents(*job, {StateEvent(job->state, "a job slot is free after waiting " +
                                                                 FormatSeconds(now - since))}),
               "unwait");
      queue_.push_back(job->id);
    } else if (give_up > 0 && now - since >= give_up) {
      FinishJob(*job, job_state::kFailed, std::nullopt,
                "gave up after waiting " + FormatSeconds(now - since) + " for a job slot (at most " +
                    std::to_string(QuotaFor(job->user).max_active_jobs) +
                    " active jobs per user): wait longer with --wait-new-job, or cancel a job");
    } else {
      job->sched["next_check"] = now + SpecNumber(*job, "wait_new_job_interval_s", 10);
      std::string place = WaitingPlace(*job);
      if (job->message.find(place) == std::string::npos) {
        job->message = "waiting for a job slot: " + place;
        LogError(AppendJobEvents(*job, {DecisionEvent(job->message)}), "wait");
      }
    }
  }
}

void Controller::PlaceQueuedJobs() {
  // Jobs of the same user asking for the same machines at the same fallback
  // step have the same chance: once one of them found nothing this pass, the
  // ones behind it are skipped unless their own fallback deadline passed.
  std::set<std::string> blocked;
  double now = clock_->Now();
  std::deque<std::string> still_queued;
  while (!queue_.empty()) {
    std::string id = queue_.front();
    queue_.pop_front();
    auto it = jobs_.find(id);
    if (it == jobs_.end() || it->second.state != job_state::kRequesting) continue;
    JobRecord& job = it->second;
    std::string signature = job.user + "\n" + job.spec["machines"].dump() + "\n" +
                            std::to_string(job.sched.value("machine", 0));
    double deadline = job.sched.value("requested_at", now) + SpecNumber(job, "wait_request_s", 30);
    bool skip = blocked.count(signature) && job.sched.contains("requested_at") && now < deadline;
    if (!skip && PlaceJob(job)) continue;
    if (!jobs_.count(id) || jobs_[id].state != job_state::kRequesting) continue;
    if (jobs_[id].instance_id.empty()) blocked.insert(signature);
    still_queued.push_back(id);
  }
  queue_ = std::move(still_queued);
}

// Returns true when the job left the queue (assigned, or failed).
bool Controller::PlaceJob(JobRecord& job) {
  if (!job.instance_id.empty()) return false;  // its new instance is provisioning
  if (TryReuseInstance(job)) return true;
  if (!MakeRoomForInstance(job)) return false;
  return RequestNewInstance(job);
}

bool Controller::TryReuseInstance(JobRecord& job) {
  // Earlier-listed types first; the longest-idle free instance of this user.
  for (const MachineRequest& req : RequestsOf(job)) {
    auto bucket = free_.find({job.user, req.type});
    if (bucket == free_.end()) continue;
    for (const auto& [since, id] : bucket->second) {
      InstanceRecord& inst = instances_.at(id);
      if (!req.market.empty() && inst.info.value("market", "") != req.market) continue;
      std::string how = inst.state == instance_state::kCooling
                            ? "took cooling instance " + id + " (no set-up needed)"
                            : "took idle instance " + id;
      Assign(job, inst, how);
      return true;
    }
  }
  return false;
}

bool Controller::MakeRoomForInstance(JobRecord& job) {
  const Quota& quota = QuotaFor(job.user);
  if (ActiveInstances(job.user) < quota.max_active_instances) return true;
  // Only the instance quota blocks: end the oldest cooling instance of a
  // type this job cannot use.
  std::set<std::string> usable;
  for (const MachineRequest& r : RequestsOf(job)) usable.insert(r.type);
  InstanceRecord* oldest = nullptr;
  for (auto it = free_.lower_bound({job.user, ""}); it != free_.end() && it->first.first == job.user; ++it) {
    if (usable.count(it->first.second)) continue;
    for (const auto& [since, id] : it->second) {
      InstanceRecord& inst = instances_.at(id);
      if (inst.state == instance_state::kCooling && (!oldest || since < oldest->state_since)) oldest = &inst;
    }
  }
  if (oldest) {
    std::string ended = oldest->id;
    TerminateInstance(*oldest, "ended to make room for " + job.id + " (instance quota)");
    LogError(AppendJobEvents(job, {DecisionEvent("ended cooling instance " + ended +
                                                 " to make room (at most " +
                                                 std::to_string(quota.max_active_instances) +
                                                 " instances per user)")}), "evict");
    return true;
  }
  job.sched.erase("requested_at");  // the fallback clock runs only while requesting
  if (noted_.insert(job.id + "|instance-quota").second)
    LogError(AppendJobEvents(job, {DecisionEvent("waiting: you have " +
                                                 std::to_string(quota.max_active_instances) +
                                                 " instances (the limit); it starts when one ends")}),
             "quota");
  return false;
}

bool Controller::RequestNewInstance(JobRecord& job) {
  std::vector<MachineRequest> reqs = RequestsOf(job);
  double now = clock_->Now();
  for (;;) {
    size_t i = job.sched.value("machine", 0);
    if (i >= reqs.size()) {
      std::string list;
      for (const auto& a : job.sched.value("attempts", Json::array()))
        list += "\n  - " + a.value("machine", "") + ": " + a.value("reason", "");
      FinishJob(job, job_state::kFailed, std::nullopt, "no machine could be had:" + list);
      return true;
    }
    const MachineRequest& req = reqs[i];
    const MachineType* type = catalog_.Find(req.type);
    Provider* provider = type ? ProviderFor(type->name) : nullptr;
    if (!provider) { FailAttempt(job, req.type, "no provider serves it"); continue; }
    if (!job.sched.contains("requested_at")) {
      job.sched["requested_at"] = now;
      LogError(AppendJobEvents(job, {DecisionEvent("requesting " + req.type +
                                                   (req.market.empty() ? "" : ":" + req.market))}),
               "request");
    }
    if (provider->Available(*type) > 0) {
      InstanceRecord inst;
      inst.id = NewId("inst");
      inst.machine_type = type->name;
      inst.provider = type->provider;
      inst.user = job.user;
      inst.job_id = job.id;  // reserved for this job until it registers
      inst.created_at = inst.state_since = now;
      inst.info["market"] = req.market.empty() ? type->default_market : req.market;
      Status s = provider->Launch(*type, agent_launch_, &inst);
      if (!s.ok()) {
        if (s.code() == Code::kResourceExhausted) return false;  // raced: try next pass
        FailAttempt(job, req.type, s.message());
        continue;
      }
      AddInstance(inst);
      TouchHeartbeat(inst.id);
      OpenInterval(instances_[inst.id], "running", job.id);
      SaveInstance(instances_[inst.id], instance_state::kProvisioning);
      job.instance_id = inst.id;
      job.machine_type = type->name;
      job.updated_at = now;
      LogError(AppendJobEvents(job, {DecisionEvent("granted: new " + type->name + " instance " +
                                                   inst.id + " (" + inst.info["market"].get<std::string>() +
                                                   "), provisioning")}), "grant");
      return false;  // placed once the agent registers
    }
    double wait = SpecNumber(job, "wait_request_s", 30);
    double waited = now - job.sched.value("requested_at", now);
    if (waited < wait) return false;
    FailAttempt(job, req.type, "no capacity granted within " + FormatSeconds(wait));
  }
}

void Controller::FailAttempt(JobRecord& job, const std::string& machine, const std::string& reason) {
  Json attempts = job.sched.value("attempts", Json::array());
  attempts.push_back({{"machine", machine}, {"reason", reason}});
  job.sched["attempts"] = attempts;
  job.sched["machine"] = job.sched.value("machine", 0) + 1;
  job.sched.erase("requested_at");
  LogError(AppendJobEvents(job, {DecisionEvent("gave up on " + machine + ": " + reason)}), "fallback");
}

void Controller::Assign(JobRecord& job, InstanceRecord& inst, const std::string& how) {
  job.state = job_state::kStarting;
  job.instance_id = inst.id;
  job.machine_type = inst.machine_type;
  job.attempt += 1;
  job.run_acked = 0;
  job.updated_at = clock_->Now();
  job.sched.erase("requested_at");
  inst.user = job.user;
  inst.job_id = job.id;
  if (inst.state == instance_state::kCooling || inst.state == instance_state::kIdle) {
    CloseInterval(inst);  // reuse ends the cooling period
    OpenInterval(inst, "running", job.id);
  }
  SaveInstance(inst, instance_state::kBusy);
  Json st = StateEvent(job.state, how);
  st["instance"] = inst.id;
  st["machine_type"] = inst.machine_type;
  LogError(AppendJobEvents(job, {st}), "assign");
  noted_.erase(job.id + "|instance-quota");
  stats_.placements++;
  notifier_.Notify(kInstanceKey + inst.id);
}

}  // namespace yard
