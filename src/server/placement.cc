// The scheduler pass: quota waits, reuse of warm instances, ordered
// fallback between machine types, and assignment. See controller.h for the
// rules; every decision is an event on the job's stream.
//
// Cost: a pass never walks the queue. It visits the first job of each group
// of the JobQueue and stops a group at its first miss, then the jobs whose
// fallback is due (request_deadlines_) and the waiting jobs whose check is
// due (wait_checks_): O(groups + placements + due jobs), all in one store
// transaction (see Pass).
#include <algorithm>
#include <optional>

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

// The provider settings a job asks for ({} when none).
Json SettingsOf(const JobRecord& job) { return job.spec.value("settings", Json::object()); }

// Settings as a key: equal settings, equal keys ("" for none; nlohmann's
// objects are sorted, so dump() is canonical).
std::string SettingsKey(const Json& settings) {
  return settings.is_object() && !settings.empty() ? settings.dump() : "";
}

// Jobs with equal keys have the same chance of a placement (see JobQueue):
// same user (quotas, reuse), same machine ids (types, markets, order), same
// settings (which instances fit), same fallback step.
std::string PlacementKey(const JobRecord& job) {
  return job.user + '\n' + job.spec["machines"].dump() + '\n' + SettingsKey(SettingsOf(job)) +
         '\n' + std::to_string(job.sched.machine);
}

std::string RequestName(const MachineRequest& req) {
  return req.type + (req.market.empty() ? "" : ":" + req.market);
}

std::string Ordinal(int n) {
  const char* suffix = (n % 100 >= 11 && n % 100 <= 13) ? "th"
                       : n % 10 == 1                    ? "st"
                       : n % 10 == 2                    ? "nd"
                       : n % 10 == 3                    ? "rd"
                                                        : "th";
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
  std::pair<double, std::string> place{job.created_at, job.id};
  if (job.state == job_state::kWaiting) {
    waiting_of_[job.user].insert(place);
    return;
  }
  if (old_state != job_state::kWaiting) return;
  auto line = waiting_of_.find(job.user);
  if (line != waiting_of_.end()) {
    line->second.erase(place);
    if (line->second.empty()) waiting_of_.erase(line);
  }
  wait_checks_.erase({job.sched.next_check, job.id});
}

void Controller::ScheduleWaitCheck(JobRecord& job, double at) {
  wait_checks_.erase({job.sched.next_check, job.id});
  job.sched.next_check = at;
  wait_checks_.insert({at, job.id});
}

void Controller::IndexInstance(const InstanceRecord& inst) {
  auto old = free_entry_.find(inst.id);
  if (old != free_entry_.end()) {
    auto bucket = free_.find(old->second.first);
    bucket->second.erase({old->second.second, inst.id});
    if (bucket->second.empty()) free_.erase(bucket);
    free_entry_.erase(old);
  }
  bool free = (inst.state == instance_state::kIdle || inst.state == instance_state::kCooling) &&
              inst.job_id.empty() && instances_.count(inst.id);
  if (!free) return;
  FreeKey key{inst.user, inst.machine_type,
              SettingsKey(inst.info.value("settings", Json::object()))};
  free_[key].insert({inst.state_since, inst.id});
  free_entry_[inst.id] = {key, inst.state_since};
}

void Controller::AddInstance(const InstanceRecord& inst) {
  instances_[inst.id] = inst;
  instances_of_[inst.user] += 1;
  SyncCredentials(inst);
}

void Controller::EraseInstance(std::string id) {
  auto it = instances_.find(id);
  if (it == instances_.end()) return;
  instances_of_[it->second.user] -= 1;
  instances_.erase(it);
  exit_answers_.erase(id);
  credentials_.Remove(id);  // its agent's credentials open nothing any more
  InstanceRecord gone;
  gone.id = id;
  IndexInstance(gone);  // drops its free_ entry
  heartbeats_.erase(id);
  DropNext(id);  // (MarkLost requeued it first)
  pipelining_.erase(id);
  notifier_.Forget(kInstanceKey + id);
}

// Place among the user's waiting jobs, older first.
std::string Controller::WaitingPlace(const JobRecord& job) const {
  auto line = waiting_of_.find(job.user);
  size_t before =
      line == waiting_of_.end() ? 0 : line->second.order_of_key({job.created_at, job.id});
  return Ordinal(static_cast<int>(before) + 1) + " in line";
}

// ---------------------------------------------------------------- the queue

void Controller::Enqueue(JobRecord& job, bool front) {
  if (front)
    queue_.PushFront(job.id, "");
  else
    queue_.PushBack(job.id, "");
  if (job.instance_id.empty()) {
    EnterGroup(job);
  } else if (job.sched.requested_at) {  // recovered with a requested instance
    request_deadlines_.insert(
        {*job.sched.requested_at + SpecNumber(job, "wait_request_s", 30), job.id});
  }
}

void Controller::EnterGroup(JobRecord& job) {
  if (!queue_.Contains(job.id)) queue_.PushBack(job.id, "");
  queue_.SetGroup(job.id, PlacementKey(job));
  if (job.sched.requested_at) {  // recovered: its clock runs on
    request_deadlines_.insert(
        {*job.sched.requested_at + SpecNumber(job, "wait_request_s", 30), job.id});
    return;
  }
  // The request starts now even if the pass never gets to this job while
  // others of its group are ahead: its fallback clock must run.
  std::vector<MachineRequest> reqs = RequestsOf(job);
  size_t i = job.sched.machine;
  if (i < reqs.size() && ProviderFor(reqs[i].type) && !job.sched.held_capacity)
    StartRequest(job, RequestName(reqs[i]));
}

void Controller::StartRequest(JobRecord& job, const std::string& machine_id) {
  double now = clock_->Now();
  job.sched.requested_at = now;
  request_deadlines_.insert({now + SpecNumber(job, "wait_request_s", 30), job.id});
  LogError(AppendJobEvents(job, {DecisionEvent("requesting " + machine_id)}), "request");
}

void Controller::EndRequest(JobRecord& job) {
  if (!job.sched.requested_at) return;
  request_deadlines_.erase(
      {*job.sched.requested_at + SpecNumber(job, "wait_request_s", 30), job.id});
  job.sched.requested_at.reset();
}

void Controller::Dequeue(JobRecord& job) {
  EndRequest(job);
  queue_.Remove(job.id);
}

double Controller::RequestDeadline(JobRecord& job) {
  double wait = SpecNumber(job, "wait_request_s", 30);
  double started = job.sched.requested_at.value_or(clock_->Now());
  double held = queue_.quota_blocked_at(queue_.GroupOf(job.id));
  if (held > started && job.sched.requested_at) {
    // The instance quota held the job then, so it was not requesting: the
    // clock starts again from there.
    request_deadlines_.erase({started + wait, job.id});
    started = held;
    job.sched.requested_at = started;
    request_deadlines_.insert({started + wait, job.id});
  }
  return started + wait;
}

// ---------------------------------------------------------------- the pass

void Controller::Pass() {
  auto started = std::chrono::steady_clock::now();
  double now = clock_->Now();
  // Providers first, outside the store transaction: a slow provider call
  // must not hold the store from readers (event streams, blob checks).
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
  // Group commit: every write of the placement (jobs, events, instances,
  // ledger) goes into one transaction.
  Batched([&]() REQUIRES(mu_) {
    for (const auto& [name, p] : providers_)
      for (const LaunchOutcome& o : p->TakeLaunchOutcomes()) ApplyLaunchOutcome(o);
    if (!wait_checks_.empty() && wait_checks_.begin()->first <= now) CheckWaitingJobs();
    if (!next_of_.empty()) RevokeLongWaits();
    PlaceQueuedJobs();
  });
  stats_.passes++;
  stats_.pass_seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
}

void Controller::CheckWaitingJobs() {
  double now = clock_->Now();
  // The jobs due for a look, longest waiting first: a free slot goes to it.
  std::vector<std::pair<double, std::string>> due;
  for (auto it = wait_checks_.begin(); it != wait_checks_.end() && it->first <= now; ++it)
    due.push_back({jobs_.at(it->second).created_at, it->second});
  std::sort(due.begin(), due.end());
  stats_.waiting_checks += due.size();
  for (const auto& [created, id] : due) {
    JobRecord& job = jobs_.at(id);
    if (job.state != job_state::kWaiting) continue;  // an older one's look let it in
    double since = job.sched.waiting_since.value_or(job.created_at);
    double give_up = SpecNumber(job, "wait_new_job_s", -1);
    if (ActiveJobs(job.user) < QuotaFor(job.user).max_active_jobs) {
      UnwaitOldest(job.user, now);  // first come, first served, whatever the intervals
      if (job.state != job_state::kWaiting) continue;
      ScheduleWaitCheck(job, now + SpecNumber(job, "wait_new_job_interval_s", 10));
    } else if (give_up > 0 && now - since >= give_up) {
      FinishJob(job, job_state::kFailed, std::nullopt,
                "gave up after waiting " + FormatSeconds(now - since) +
                    " for a job slot (at most " +
                    std::to_string(QuotaFor(job.user).max_active_jobs) +
                    " active jobs per user): wait longer with --wait-new-job, or cancel a job");
    } else {
      ScheduleWaitCheck(job, now + SpecNumber(job, "wait_new_job_interval_s", 10));
      std::string place = WaitingPlace(job);
      if (job.message.find(place) == std::string::npos) {
        job.message = "waiting for a job slot: " + place;
        LogError(AppendJobEvents(job, {DecisionEvent(job.message)}), "wait");
      }
    }
  }
}

void Controller::UnwaitOldest(const std::string& user, double now) {
  while (ActiveJobs(user) < QuotaFor(user).max_active_jobs) {
    auto line = waiting_of_.find(user);
    if (line == waiting_of_.end() || line->second.empty()) return;
    UnwaitJob(jobs_.at(line->second.begin()->second), now);
  }
}

void Controller::UnwaitJob(JobRecord& job, double now) {
  double since = job.sched.waiting_since.value_or(job.created_at);
  job.state = job_state::kRequesting;
  CountJob(job, job_state::kWaiting);
  job.message.clear();
  job.updated_at = now;
  LogError(AppendJobEvents(job, {StateEvent(job.state, "a job slot is free after waiting " +
                                                           FormatSeconds(now - since))}),
           "unwait");
  Enqueue(job, /*front=*/false);
}

void Controller::PlaceQueuedJobs() {
  Missed missed;
  pass_missed_.clear();
  // Queue order across groups: always the group whose first job is first.
  // A group leaves the pass at its first miss; the jobs behind would miss too.
  JobQueue::GroupOrder ready = queue_.groups();
  while (!ready.empty()) {
    auto [order, key] = *ready.begin();
    ready.erase(ready.begin());
    if (missed.count(key)) continue;
    std::optional<JobQueue::Order> now_first = queue_.HeadOrder(key);
    if (!now_first) continue;
    if (*now_first != order) {
      ready.insert({*now_first, key});
      continue;
    }
    if (!PlaceJob(jobs_.at(*queue_.Head(key)), missed)) continue;
    if (std::optional<JobQueue::Order> next = queue_.HeadOrder(key); next && !missed.count(key))
      ready.insert({*next, key});
  }
  PlaceDueRequests(missed);
  last_missed_ = std::move(pass_missed_);
  pass_missed_.clear();
}

void Controller::ReuseNow(const std::string& user) {
  if (!HasFreeInstance(user)) return;
  auto started = std::chrono::steady_clock::now();
  std::string prefix = user + '\n';  // see PlacementKey
  JobQueue::GroupOrder ready;
  for (const auto& entry : queue_.groups())
    if (entry.second.compare(0, prefix.size(), prefix) == 0) ready.insert(entry);
  // As in PlaceQueuedJobs, the group whose first job is first; a group that
  // cannot reuse now leaves (the free instances only get fewer).
  while (!ready.empty() && HasFreeInstance(user)) {
    std::string key = ready.begin()->second;
    ready.erase(ready.begin());
    stats_.visits++;
    if (!TryReuseInstance(jobs_.at(*queue_.Head(key)))) continue;
    if (std::optional<JobQueue::Order> next = queue_.HeadOrder(key)) ready.insert({*next, key});
  }
  stats_.pass_seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
}

bool Controller::HasFreeInstance(const std::string& user) const {
  auto it = free_.lower_bound({user, "", ""});
  return it != free_.end() && std::get<0>(it->first) == user;  // buckets are never empty
}

// Jobs behind the first of a group that missed are not visited, but their
// own fallback deadlines still count: the due ones move on here.
void Controller::PlaceDueRequests(Missed& missed) {
  double now = clock_->Now();
  std::vector<std::string> due;
  for (auto it = request_deadlines_.begin(); it != request_deadlines_.end() && it->first <= now;
       ++it)
    due.push_back(it->second);
  for (const auto& id : due) {
    auto it = jobs_.find(id);
    if (it != jobs_.end() && WithdrawRequestedInstance(it->second)) {
      PlaceJob(it->second, missed);
      continue;
    }
    if (it == jobs_.end() || queue_.GroupOf(id).empty()) continue;  // placed by an earlier one
    if (now < RequestDeadline(it->second)) continue;                // held by the quota: due later
    PlaceJob(it->second, missed);
  }
}

bool Controller::PlaceJob(JobRecord& job, Missed& missed) {
  stats_.visits++;
  if (TryReuseInstance(job)) return true;
  if (!MakeRoomForInstance(job)) {
    const std::string& key = queue_.GroupOf(job.id);
    queue_.set_quota_blocked_at(key, clock_->Now());
    missed.insert(key);
  } else if (RequestNewInstance(job, missed)) {
    return true;
  }
  // Nowhere to go now (its group, perhaps a new one after a fallback, missed):
  // behind a running job of the user's, if one fits.
  std::string key = queue_.GroupOf(job.id);
  if (key.empty() || !missed.count(key)) return false;
  pass_missed_.insert(key);
  if (!TryPipeline(job)) return false;
  missed.erase(key);
  return true;
}

bool Controller::TryReuseInstance(JobRecord& job) {
  // Earlier-listed types first; the longest-idle free instance of this user.
  std::string settings = SettingsKey(SettingsOf(job));
  for (const MachineRequest& req : RequestsOf(job)) {
    auto bucket = free_.find({job.user, req.type, settings});
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
  // Only the instance quota blocks: end the oldest cooling instance this job
  // cannot use (another type, or launched with other settings).
  std::set<FreeKey> usable;
  std::string settings = SettingsKey(SettingsOf(job));
  for (const MachineRequest& r : RequestsOf(job)) usable.insert({job.user, r.type, settings});
  InstanceRecord* oldest = nullptr;
  for (auto it = free_.lower_bound({job.user, "", ""});
       it != free_.end() && std::get<0>(it->first) == job.user; ++it) {
    if (usable.count(it->first)) continue;
    for (const auto& [since, id] : it->second) {
      InstanceRecord& inst = instances_.at(id);
      if (inst.state == instance_state::kCooling && (!oldest || since < oldest->state_since))
        oldest = &inst;
    }
  }
  if (oldest) {
    std::string ended = oldest->id;
    TerminateInstance(*oldest, "ended to make room for " + job.id + " (instance quota)");
    LogError(AppendJobEvents(
                 job, {DecisionEvent("ended cooling instance " + ended + " to make room (at most " +
                                     std::to_string(quota.max_active_instances) +
                                     " instances per user)")}),
             "evict");
    return true;
  }
  // The fallback clock stands still meanwhile (the caller notes when).
  if (noted_.insert(job.id + "|instance-quota").second)
    LogError(
        AppendJobEvents(
            job, {DecisionEvent("waiting: you have " + std::to_string(quota.max_active_instances) +
                                " instances (the limit); it starts when one ends")}),
        "quota");
  return false;
}

bool Controller::RequestNewInstance(JobRecord& job, Missed& missed) {
  std::vector<MachineRequest> reqs = RequestsOf(job);
  double now = clock_->Now();
  for (;;) {
    size_t i = job.sched.machine;
    if (i >= reqs.size()) {
      std::string list;
      for (const FallbackAttempt& a : job.sched.attempts)
        list += "\n  - " + a.machine + ": " + a.reason;
      FinishJob(job, job_state::kFailed, std::nullopt, "no machine could be had:" + list);
      return true;
    }
    const MachineRequest& req = reqs[i];
    const MachineType* listed = catalog_.Find(req.type);
    Provider* provider = listed ? ProviderFor(listed->name) : nullptr;
    if (!provider) {
      FailAttempt(job, req.type, "no provider serves it");
      continue;
    }
    if (!job.sched.requested_at && !job.sched.held_capacity) StartRequest(job, RequestName(req));
    const MachineType launched = listed->WithSettings(SettingsOf(job));
    const MachineType* type = &launched;
    CountCall(provider, "available", true);
    if (provider->Available(*type) > 0) {
      InstanceRecord inst;
      inst.id = NewId("inst");
      inst.machine_type = type->name;
      inst.provider = type->provider;
      inst.user = job.user;
      inst.job_id = job.id;  // reserved for this job until it registers
      inst.created_at = inst.state_since = now;
      inst.info["market"] = req.market.empty() ? type->default_market : req.market;
      if (!SettingsOf(job).empty()) inst.info["settings"] = SettingsOf(job);  // for reuse
      AgentLaunchInfo launch = LaunchInfoFor(&inst);
      // The bootstrap opens registration before the agent can dial in: an
      // agent a fast login away (SSH) must not find its credential unknown
      // while this launch is still being recorded.
      credentials_.Put(inst, "");
      Status s = Counted(provider, "launch", provider->Launch(*type, launch, &inst));
      if (!s.ok()) {
        credentials_.Remove(inst.id);
        if (s.code() == Code::kResourceExhausted) {  // raced: try next pass
          missed.insert(queue_.GroupOf(job.id));
          return false;
        }
        FailAttempt(job, req.type, s.message());
        continue;
      }
      AddInstance(inst);
      job.instance_id = inst.id;
      job.machine_type = type->name;
      job.updated_at = now;
      if (provider->GrantsLater()) {
        // Requested, not granted: the fallback clock runs on until the
        // provider's outcome (ApplyLaunchOutcome) or the deadline
        // (WithdrawRequestedInstance).
        SaveInstance(instances_[inst.id], instance_state::kRequested);
        queue_.Park(job.id);
        LogError(AppendJobEvents(
                     job, {DecisionEvent("requested: new " + type->name + " instance " + inst.id +
                                         " (" + inst.info["market"].get<std::string>() + ") from " +
                                         type->provider + ", waiting for it to run")}),
                 "request");
        return true;
      }
      TouchHeartbeat(inst.id);
      OpenInterval(instances_[inst.id], "running", job.id);
      SaveInstance(instances_[inst.id], instance_state::kProvisioning);
      // Placed once the agent registers; provisioning does not count against
      // wait_request_s.
      EndRequest(job);
      job.sched.held_capacity.reset();
      queue_.Park(job.id);
      stats_.grants++;
      LogError(
          AppendJobEvents(
              job, {DecisionEvent("granted: new " + type->name + " instance " + inst.id + " (" +
                                  inst.info["market"].get<std::string>() + "), provisioning")}),
          "grant");
      return true;
    }
    if (WaitForHeldCapacity(job, *provider, *type, i + 1 == reqs.size()) ||
        now < RequestDeadline(job)) {
      missed.insert(queue_.GroupOf(job.id));
      return false;
    }
    FailAttempt(
        job, req.type,
        "no capacity granted within " + FormatSeconds(SpecNumber(job, "wait_request_s", 30)));
  }
}

void Controller::ApplyLaunchOutcome(const LaunchOutcome& o) {
  auto it = instances_.find(o.instance_id);
  // Withdrawn or ended meanwhile: the provider was told (Terminate).
  if (it == instances_.end()) return;
  InstanceRecord& inst = it->second;
  if (inst.state != instance_state::kRequested) {
    // Granted already: its agent dialed in before this answer came
    // (RegisterAgent grants it then). Keep what the cloud says of it.
    if (o.kind == LaunchOutcome::Kind::kGranted && !instance_state::IsTerminal(inst.state)) {
      for (const auto& [k, v] : o.info.items()) inst.info[k] = v;
      SaveInstance(inst, inst.state);
    }
    return;
  }
  for (const auto& [k, v] : o.info.items()) inst.info[k] = v;
  auto jt = jobs_.find(inst.job_id);
  if (o.kind == LaunchOutcome::Kind::kGranted && jt != jobs_.end()) {
    GrantRequested(jt->second, inst);
    return;
  }
  std::string machine = inst.machine_type;
  TerminateInstance(inst, jt == jobs_.end() ? "its job ended before it was granted"
                                            : o.message);  // `inst` dangles from here on
  if (jt == jobs_.end()) return;
  JobRecord& job = jt->second;
  job.instance_id.clear();
  if (o.kind == LaunchOutcome::Kind::kFatal) {
    FinishJob(job, job_state::kFailed, std::nullopt,
              "cannot launch " + machine + ": " + o.message +
                  " (no other machine type is tried: "
                  "this is not a capacity problem)");
    return;
  }
  FailAttempt(job, machine, o.message.empty() ? "refused" : o.message);
  notifier_.Notify("scheduler");
}

void Controller::GrantRequested(JobRecord& job, InstanceRecord& inst) {
  TouchHeartbeat(inst.id);  // the provisioning timeout starts now
  OpenInterval(inst, "running", job.id);
  SaveInstance(inst, instance_state::kProvisioning);
  EndRequest(job);
  job.updated_at = clock_->Now();
  stats_.grants++;
  LogError(AppendJobEvents(
               job, {DecisionEvent("granted: new " + inst.machine_type + " instance " + inst.id +
                                   " (" + inst.info.value("market", "") + "), provisioning")}),
           "grant");
}

bool Controller::WithdrawRequestedInstance(JobRecord& job) {
  auto it = instances_.find(job.instance_id);
  if (it == instances_.end() || it->second.state != instance_state::kRequested) return false;
  if (clock_->Now() < RequestDeadline(job)) return false;
  std::string machine = it->second.machine_type;
  std::string waited = FormatSeconds(SpecNumber(job, "wait_request_s", 30));
  TerminateInstance(it->second, "not running within " + waited + " (withdrawn)");
  job.instance_id.clear();
  FailAttempt(job, machine,
              "not running within " + waited + " (still pending: withdrawn and ended)");
  return true;
}

bool Controller::WaitForHeldCapacity(JobRecord& job, Provider& provider, const MachineType& type,
                                     bool last) {
  if (!last || !provider.CapacityComesBack(type)) return false;
  if (job.sched.held_capacity) return true;
  EndRequest(job);  // capacity that comes back is no reason to fall back or fail
  job.sched.held_capacity = type.name;
  LogError(AppendJobEvents(job, {DecisionEvent("waiting for " + type.name +
                                               ": its capacity is in use by other jobs; "
                                               "it starts when one ends")}),
           "held capacity");
  return true;
}

// The job moves on to its next machine id (a new group).
void Controller::FailAttempt(JobRecord& job, const std::string& machine,
                             const std::string& reason) {
  job.sched.attempts.push_back({machine, reason});
  EndRequest(job);
  job.sched.machine += 1;
  if (queue_.Contains(job.id)) queue_.SetGroup(job.id, PlacementKey(job));
  LogError(AppendJobEvents(job, {DecisionEvent("gave up on " + machine + ": " + reason)}),
           "fallback");
}

void Controller::StartAttempt(JobRecord& job, const InstanceRecord& inst) {
  job.state = job_state::kStarting;
  job.instance_id = inst.id;
  job.sched.run_instance = inst.id;  // whose records this attempt's are
  job.machine_type = inst.machine_type;
  job.attempt += 1;
  job.run_acked = 0;
  job.updated_at = clock_->Now();
  Dequeue(job);
  noted_.erase(job.id + "|instance-quota");
  stats_.placements++;
}

void Controller::Assign(JobRecord& job, InstanceRecord& inst, const std::string& how) {
  StartAttempt(job, inst);
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
  notifier_.Notify(kInstanceKey + inst.id);
}

// ---------------------------------------------------------------- pipelining

JobRecord* Controller::NextJobOf(const std::string& instance_id) {
  auto it = next_of_.find(instance_id);
  if (it == next_of_.end()) return nullptr;
  auto jt = jobs_.find(it->second);
  return jt == jobs_.end() ? nullptr : &jt->second;
}

std::string Controller::DropNext(const std::string& instance_id) {
  auto it = next_of_.find(instance_id);
  if (it == next_of_.end()) return "";
  std::string id = it->second;
  next_of_.erase(it);
  delivered_.erase(id);
  revoke_.erase(id);
  return id;
}

bool Controller::FitsForPipeline(const JobRecord& job, const InstanceRecord& inst) const {
  if (inst.user != job.user || inst.state != instance_state::kBusy || next_of_.count(inst.id))
    return false;
  auto current = jobs_.find(inst.job_id);
  // Only an instance its job keeps: one that ends with its job has no next.
  if (current == jobs_.end() || current->second.instance_id != inst.id ||
      current->second.spec.value("cool_down_s", 0.0) <= 0)
    return false;
  return SettingsKey(inst.info.value("settings", Json::object())) == SettingsKey(SettingsOf(job));
}

bool Controller::TryPipeline(JobRecord& job) {
  if (pipelining_.empty() || job.sched.no_pipeline) return false;
  for (const MachineRequest& req : RequestsOf(job)) {  // earlier-listed types first
    for (const std::string& id : pipelining_) {
      auto it = instances_.find(id);
      if (it == instances_.end() || it->second.machine_type != req.type) continue;
      if (!req.market.empty() && it->second.info.value("market", "") != req.market) continue;
      if (!FitsForPipeline(job, it->second)) continue;
      PipelineOnto(job, it->second);
      return true;
    }
  }
  return false;
}

void Controller::PipelineOnto(JobRecord& job, InstanceRecord& inst) {
  // Kept aside: should the job come back unstarted, its fallback clock runs on.
  StartAttempt(job, inst);
  job.sched.pipelined_requested_at = job.sched.requested_at;
  job.sched.pipelined_at = clock_->Now();
  next_of_[inst.id] = job.id;
  SyncCredentials(inst);  // its agent may read this job's bundle too now
  Json st = StateEvent(job.state, "queued on busy instance " + inst.id + " behind job " +
                                      inst.job_id + ": it starts there when that one ends");
  st["instance"] = inst.id;
  st["machine_type"] = inst.machine_type;
  LogError(AppendJobEvents(job, {st}), "pipeline");
  notifier_.Notify(kInstanceKey + inst.id);
}

void Controller::PipelineNow(const std::string& user) {
  if (pipelining_.empty()) return;
  std::string prefix = user + '\n';  // see PlacementKey
  std::vector<std::string> keys;     // in queue order; pipelining changes the queue
  for (const auto& [order, key] : queue_.groups())
    if (key.compare(0, prefix.size(), prefix) == 0 && last_missed_.count(key)) keys.push_back(key);
  for (const std::string& key : keys) {
    // Instances only get fewer: the first job that fits nowhere ends it.
    while (const std::string* head = queue_.Head(key)) {
      if (!TryPipeline(jobs_.at(*head))) return;
    }
  }
}

bool Controller::PromoteNext(InstanceRecord& inst) {
  JobRecord* next = NextJobOf(inst.id);
  if (!next) return false;
  bool delivered = delivered_.count(next->id) > 0;
  bool revoking = revoke_.count(next->id) > 0;
  DropNext(inst.id);
  if (revoking) revoke_[next->id] = true;  // its answer may still come: ReturnUnstarted then
  next->sched.pipelined_at.reset();
  next->sched.pipelined_requested_at.reset();
  CloseInterval(inst);
  OpenInterval(inst, "running", next->id);
  inst.job_id = next->id;
  SaveInstance(inst, instance_state::kBusy);
  // Not delivered yet: WorkFor delivers it as the instance's job, as usual.
  if (!delivered) return true;
  next->state = job_state::kRunning;
  next->updated_at = clock_->Now();
  Json st = StateEvent(next->state, "running on " + inst.id +
                                        " (queued there, it started as the job before it ended)");
  st["instance"] = inst.id;
  LogError(AppendJobEvents(*next, {st}), "promote");
  return true;
}

bool Controller::JobLeftInstance(InstanceRecord& inst, double cool_down_s) {
  if (PromoteNext(inst)) {
    PipelineNow(inst.user);  // its next slot is free again
    return true;
  }
  ReleaseInstance(inst, cool_down_s);
  return false;
}

void Controller::ReturnUnstarted(JobRecord& job, const std::string& why) {
  std::string inst_id = job.instance_id;
  if (auto it = next_of_.find(inst_id); it != next_of_.end() && it->second == job.id)
    DropNext(inst_id);
  revoke_.erase(job.id);
  job.state = job_state::kRequesting;
  job.instance_id.clear();
  job.updated_at = clock_->Now();
  job.sched.no_pipeline = true;
  if (job.sched.pipelined_requested_at) job.sched.requested_at = job.sched.pipelined_requested_at;
  job.sched.pipelined_requested_at.reset();
  job.sched.pipelined_at.reset();
  LogError(AppendJobEvents(job, {StateEvent(job.state, why)}), "return unstarted");
  std::string user = job.user;
  Enqueue(job, /*front=*/true);  // it was placed before anything queued now
  auto it = instances_.find(inst_id);
  if (it != instances_.end() && it->second.job_id == job.id) {
    JobLeftInstance(it->second, job.spec.value("cool_down_s", 0.0));  // promoted meanwhile
  } else if (it != instances_.end()) {
    SyncCredentials(it->second);
  }
  if (free_entry_.count(inst_id)) ReuseNow(user);
  notifier_.Notify("scheduler");
}

void Controller::RevokeLongWaits() {
  double now = clock_->Now();
  std::vector<std::string> undelivered;
  for (const auto& [inst_id, job_id] : next_of_) {
    JobRecord& job = jobs_.at(job_id);
    if (now - job.sched.pipelined_at.value_or(now) < kPipelineWaitS || revoke_.count(job_id))
      continue;
    if (!delivered_.count(job_id)) {
      undelivered.push_back(job_id);
      continue;
    }
    revoke_[job_id] = false;
    notifier_.Notify(kInstanceKey + inst_id);
  }
  for (const std::string& id : undelivered)
    ReturnUnstarted(jobs_.at(id), "waited " + FormatSeconds(kPipelineWaitS) +
                                      " behind another job on a busy instance: placed again");
}

std::optional<Json> Controller::NextWorkFor(InstanceRecord& inst) {
  JobRecord* next = NextJobOf(inst.id);
  if (!next) return std::nullopt;
  if (next->cancel_requested && !cancel_sent_.count(next->id)) {
    cancel_sent_.insert(next->id);
    return Json{{"cancel", next->id}};
  }
  if (auto rv = revoke_.find(next->id); rv != revoke_.end() && !rv->second) {
    rv->second = true;
    return Json{{"revoke", next->id}, {"attempt", next->attempt}};
  }
  if (!delivered_.insert(next->id).second) return std::nullopt;
  return Json{{"assign", AssignmentJson(*next)}};
}

}  // namespace yard
