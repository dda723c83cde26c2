#include "server/controller.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "common/manifest.h"
#include "server/job_events.h"
#include "server/job_spec.h"

namespace yard {
Controller::Controller(Store* store, BlobStore* blobs, Catalog catalog,
                       std::map<std::string, Provider*> providers, AgentLaunchInfo agent_launch,
                       const Clock* clock, ControllerOptions options)
    : store_(store),
      blobs_(blobs),
      catalog_(std::move(catalog)),
      providers_(std::move(providers)),
      agent_launch_(std::move(agent_launch)),
      clock_(clock),
      options_(std::move(options)) {}

Controller::~Controller() { Stop(); }

void Controller::LogError(const Status& s, const char* where) {
  if (!s.ok()) std::fprintf(stderr, "yard server: %s: %s\n", where, s.ToString().c_str());
}

Provider* Controller::ProviderFor(const std::string& machine_type) {
  const MachineType* t = catalog_.Find(machine_type);
  if (!t) return nullptr;
  auto it = providers_.find(t->provider);
  return it == providers_.end() ? nullptr : it->second;
}

int Controller::AvailableNow(const MachineType& type) {
  auto it = providers_.find(type.provider);
  if (it == providers_.end()) return 0;
  CountCall(it->second, "available", true);
  return it->second->Available(type);
}

// ---------------------------------------------------------------- recovery

int64_t Controller::DeliveredRecords(const std::string& job_id, int64_t attempt) {
  StatusOr<JobRecord> job = store_->GetJob(job_id);
  if (!job.ok() || attempt > job->attempt) return -1;
  if (attempt < job->attempt) return std::numeric_limits<int64_t>::max();
  return job->run_acked;
}

Status Controller::Recover() {
  MutexLock lock(mu_);
  YARD_ASSIGN_OR_RETURN(auto jobs,
                        store_->JobsInStates({job_state::kWaiting, job_state::kRequesting,
                                              job_state::kStarting, job_state::kRunning}));
  for (auto& j : jobs) {
    CountJob(j, job_state::kWaiting);
    JobRecord& job = jobs_[j.id] = std::move(j);
    if (job.state == job_state::kWaiting) ScheduleWaitCheck(job, job.sched.next_check);
    if (job.state == job_state::kRequesting) Enqueue(job, /*front=*/false);
  }
  YARD_ASSIGN_OR_RETURN(auto insts, store_->ListInstances(false));
  for (auto& inst : insts) {
    AddInstance(inst);
    IndexInstance(inst);
    TouchHeartbeat(inst.id);  // a fresh grace: agents are reconnecting
    Provider* p = ProviderFor(inst.machine_type);
    bool alive = p && (inst.state == instance_state::kTerminating ? false : p->Adopt(inst));
    if (p && inst.state != instance_state::kTerminating) CountCall(p, "adopt", true);
    if (inst.state == instance_state::kTerminating) {
      if (p) LogError(Counted(p, "terminate", p->Terminate(inst)), "terminate on recovery");
      SaveInstance(instances_[inst.id], instance_state::kTerminated);
      EraseInstance(inst.id);
    } else if (!alive) {
      MarkLost(instances_[inst.id], "its agent was gone when the server restarted", false);
    }
  }
  RecoverNextJobs();
  return Status::Ok();
}

// A starting job on an instance that runs another job was pipelined there.
// Recovered before its instance's agent polls again (with pipeline=1).
void Controller::RecoverNextJobs() {
  for (auto& [id, job] : jobs_) {
    auto inst = instances_.find(job.instance_id);
    if (job.state != job_state::kStarting || inst == instances_.end() || inst->second.job_id == id)
      continue;
    if (!job.sched.pipelined_at) continue;
    next_of_[inst->first] = id;
    SyncCredentials(inst->second);
  }
}

void Controller::Start() {
  stop_ = false;
  thread_ = std::thread([this] {
    uint64_t seen = notifier_.Version("scheduler");
    while (!stop_) {
      {
        MutexLock lock(mu_);
        Pass();
      }
      seen = notifier_.Wait("scheduler", seen, std::chrono::milliseconds(200));
    }
  });
}

void Controller::Stop() {
  stop_ = true;
  notifier_.Notify("scheduler");
  if (thread_.joinable()) thread_.join();
}

void Controller::RunPass() {
  MutexLock lock(mu_);
  last_monitor_ = {};  // an explicit pass checks everything
  Pass();
}

Controller::PassStats Controller::pass_stats() {
  MutexLock lock(mu_);
  PassStats s = stats_;
  s.queued = queue_.size();
  for (const auto& [user, line] : waiting_of_) s.waiting += line.size();
  return s;
}

std::map<std::pair<std::string, std::string>, std::pair<uint64_t, uint64_t>>
Controller::ProviderCalls() {
  MutexLock lock(calls_mu_);
  return calls_;
}

void Controller::CountCall(Provider* p, const char* call, bool ok) {
  MutexLock lock(calls_mu_);
  auto& c = calls_[{p->name(), call}];
  ++c.first;
  if (!ok) ++c.second;
}

Status Controller::Counted(Provider* p, const char* call, Status s) {
  CountCall(p, call, s.ok());
  return s;
}

Provider* Controller::provider(const std::string& name) {
  auto it = providers_.find(name);
  return it == providers_.end() ? nullptr : it->second;
}

void Controller::TouchHeartbeat(const std::string& instance_id) {
  heartbeats_[instance_id] = clock_->Monotonic();
}

double Controller::SilentSeconds(const std::string& instance_id) {
  auto it = heartbeats_.find(instance_id);
  if (it == heartbeats_.end()) return 0;
  return clock_->Monotonic() - it->second;
}

// ---------------------------------------------------------------- user side

StatusOr<Json> Controller::ValidateSpec(const std::string& user, const Json& spec) {
  YARD_ASSIGN_OR_RETURN(ValidJobSpec valid, ValidateJobSpec(spec, catalog_));
  YARD_ASSIGN_OR_RETURN(auto owned, store_->OwnedBlobs(user, valid.bundle_chunks));
  if (owned.size() != valid.bundle_chunks.size())
    return FailedPrecondition(std::to_string(valid.bundle_chunks.size() - owned.size()) +
                              " chunks of the bundle were not uploaded: upload them with "
                              "PUT /v1/blobs/{sha256} first");
  return std::move(valid.spec);
}

Status Controller::CheckSettings(const Json& spec) {
  const Json& settings = spec.value("settings", Json::object());
  if (settings.empty()) return Status::Ok();
  for (const auto& m : spec["machines"]) {
    const MachineType* type = catalog_.Find(ParseMachineRequest(m.get<std::string>())->type);
    auto p = providers_.find(type->provider);
    // Without a provider the attempt fails anyway, saying so.
    if (p == providers_.end()) continue;
    std::set<std::string> allowed = p->second->JobSettingKeys(*type);
    for (const auto& [key, value] : settings.items()) {
      if (allowed.count(key)) continue;
      std::string names;
      for (const auto& a : allowed) names += (names.empty() ? "" : ", ") + a;
      return InvalidArgument("setting '" + key + "' is not accepted by machine type '" +
                             type->name + "' (provider " + type->provider + "): " +
                             (names.empty() ? "it accepts no settings" : "it accepts " + names) +
                             "; see docs/providers.md");
    }
  }
  return Status::Ok();
}

StatusOr<JobRecord> Controller::SubmitJob(const std::string& user, const Json& spec) {
  YARD_ASSIGN_OR_RETURN(Json valid, ValidateSpec(user, spec));
  std::vector<Json> first_events;
  if (valid["machines"].empty()) {
    valid["machines"] = Json::array({options_.default_machine});
    first_events.push_back(DecisionEvent("no machines given: using the default machine type '" +
                                         options_.default_machine + "'"));
  }
  YARD_RETURN_IF_ERROR(CheckSettings(valid));
  JobRecord job;
  job.id = NewId("job");
  job.user = user;
  job.description = valid.value("description", "");
  job.spec = std::move(valid);
  job.created_at = job.updated_at = clock_->Now();
  MutexLock lock(mu_);
  const Quota& quota = QuotaFor(user);
  if (ActiveJobs(user) >= quota.max_active_jobs) {
    job.state = job_state::kWaiting;
    job.sched.waiting_since = job.created_at;
    job.sched.next_check = job.created_at + job.spec.value("wait_new_job_interval_s", 10.0);
  } else {
    job.state = job_state::kRequesting;
  }
  jobs_[job.id] = job;  // counted for WaitingPlace
  std::string why = job.state == job_state::kWaiting
                        ? "waiting: " + std::to_string(quota.max_active_jobs) +
                              " of your jobs are active (the limit); " + WaitingPlace(job)
                        : "queued";
  first_events.insert(first_events.begin(), StateEvent(job.state, why));
  job.message = job.state == job_state::kWaiting ? why : "";
  // One transaction: the job, its first events, its request and, with an
  // empty queue, its placement.
  bool counted = false, placed = false;
  Status s = store_->Transaction([&]() REQUIRES(mu_) -> Status {
    YARD_RETURN_IF_ERROR(store_->InsertJob(job));
    YARD_RETURN_IF_ERROR(AppendJobEvents(job, std::move(first_events)));
    JobRecord& live = jobs_[job.id] = job;
    CountJob(live, job_state::kWaiting);
    counted = true;
    if (live.state == job_state::kWaiting) ScheduleWaitCheck(live, live.sched.next_check);
    if (live.state != job_state::kRequesting) return Status::Ok();
    Enqueue(live, /*front=*/false);
    // With nothing queued ahead, dispatch inline: a warm instance starts the
    // job now. Otherwise the scheduler keeps the queue's order.
    placed = queue_.size() == 1;
    if (placed)
      PlaceQueuedJobs();
    else
      notifier_.Notify("scheduler");
    return Status::Ok();
  });
  // A placement changes instances too: more than this job can forget.
  if (!s.ok() && placed) StoreDiverged(s, "storing a new job");
  if (!s.ok()) {  // not stored: forget it everywhere
    JobRecord& live = jobs_[job.id];
    std::string old_state = live.state;
    live.state = job_state::kFailed;
    if (counted) CountJob(live, old_state);
    Dequeue(live);
    jobs_.erase(job.id);
    return s;
  }
  return jobs_.count(job.id) ? jobs_[job.id] : job;
}

StatusOr<JobRecord> Controller::GetJobFor(const std::string& user, const std::string& id) {
  {
    MutexLock lock(mu_);
    auto it = jobs_.find(id);
    if (it != jobs_.end()) {
      if (it->second.user != user)
        return NotFound("no job '" + id + "': list yours with `yard jobs`");
      return it->second;
    }
  }
  StatusOr<JobRecord> job = store_->GetJob(id);
  if (!job.ok() || job->user != user)
    return NotFound("no job '" + id + "': list yours with `yard jobs`");
  return job;
}

StatusOr<JobRecord> Controller::CancelJob(const std::string& user, const std::string& id) {
  YARD_ASSIGN_OR_RETURN(JobRecord snapshot, GetJobFor(user, id));
  MutexLock lock(mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return snapshot;  // already finished: nothing to cancel
  JobRecord& job = it->second;
  if (job.state == job_state::kWaiting || job.state == job_state::kRequesting) {
    FinishJob(job, job_state::kCancelled, std::nullopt, "cancelled before it started");
    return store_->GetJob(id);
  }
  if (auto next = next_of_.find(job.instance_id);
      next != next_of_.end() && next->second == id && !delivered_.count(id)) {
    // Queued behind another job and not sent to the agent: it never runs.
    FinishJob(job, job_state::kCancelled, std::nullopt, "cancelled before it started");
    return store_->GetJob(id);
  }
  job.cancel_requested = true;
  job.updated_at = clock_->Now();
  LogError(AppendJobEvents(job, {DecisionEvent("cancel requested")}), "cancel");
  notifier_.Notify(kInstanceKey + job.instance_id);
  return job;
}

StatusOr<Json> Controller::ListInstancesFor(const std::string& user, bool include_ended) {
  YARD_ASSIGN_OR_RETURN(auto all, store_->ListInstances(include_ended));
  double now = clock_->Now();
  Json out = Json::array();
  MutexLock lock(mu_);
  for (const auto& stored : all) {
    if (stored.user != user) continue;
    auto live = instances_.find(stored.id);
    const InstanceRecord& inst = live != instances_.end() ? live->second : stored;
    Json j = inst.ToApiJson(now);
    j["market"] = inst.info.value("market", "on-demand");
    if (!instance_state::IsTerminal(inst.state)) j["price_per_hour"] = CurrentPricePerHour(inst);
    if (inst.info.contains("slurm_job_id")) j["slurm_job_id"] = inst.info["slurm_job_id"];
    if (inst.info.contains("ec2_instance_id")) j["ec2_instance_id"] = inst.info["ec2_instance_id"];
    out.push_back(j);
  }
  return out;
}

// ---------------------------------------------------------------- agent side

Status Controller::BindAgentCredential(const std::string& instance_id,
                                       const std::string& credential) {
  if (!AgentCredentials::IsCredential(credential))
    return InvalidArgument(
        "'credential' must be \"yit_\" and 48 lower-case hex digits, made by the agent");
  MutexLock lock(mu_);
  auto it = instances_.find(instance_id);
  if (it == instances_.end())
    return NotFound("unknown or ended instance '" + instance_id + "': this agent should exit");
  InstanceRecord& inst = it->second;
  std::string hash = AgentCredentials::Hash(credential);
  if (inst.credential_hash == hash) return Status::Ok();  // a retried register
  if (!inst.credential_hash.empty())
    return Unauthenticated(
        "the bootstrap credential of instance " + instance_id +
        " was exchanged already, by an agent with another credential: it is "
        "single-use (an agent that lost its credential file needs a new instance)");
  inst.credential_hash = hash;
  SaveInstance(inst, inst.state);
  return Status::Ok();
}

StatusOr<InstanceRecord> Controller::RegisterAgent(const std::string& instance_id) {
  MutexLock lock(mu_);
  auto it = instances_.find(instance_id);
  if (it == instances_.end())
    return NotFound("unknown or ended instance '" + instance_id + "': this agent should exit");
  InstanceRecord& inst = it->second;
  TouchHeartbeat(instance_id);
  ++registrations_[instance_id];  // polls begun before this are an earlier agent's
  if (inst.state != instance_state::kProvisioning && inst.state != instance_state::kRequested) {
    Provider* p = ProviderFor(inst.machine_type);
    if (p && !p->IsAlive(inst)) {  // a local agent is the server's child: a new one is not it
      Batched([&]() REQUIRES(mu_) { MarkLost(inst, "its agent process is gone", false); });
      return NotFound("unknown or ended instance '" + instance_id + "': this agent should exit");
    }
    Batched([&]() REQUIRES(mu_) { TakeBackFromRestartedAgent(inst); });
    return inst;
  }
  Batched([&]() REQUIRES(mu_) {
    auto job = jobs_.find(inst.job_id);
    // What the provider knows of the machine (a cloud's instance id, the pid
    // of a simulated machine's agent) is stored with this registration, so
    // that a server restarted from here on can adopt the instance.
    if (Provider* p = ProviderFor(inst.machine_type)) {
      Json known = p->KnownInfo(inst);  // named: items() of a temporary would dangle
      for (const auto& [k, v] : known.items()) inst.info[k] = v;
    }
    // A cloud instance whose agent dials in before the provider's poll has
    // seen it running (a fast boot) runs: it is granted now, or it would
    // stay "provisioning" with its agent already waiting for work.
    if (inst.state == instance_state::kRequested && job != jobs_.end())
      GrantRequested(job->second, inst);
    if (job != jobs_.end() && job->second.state == job_state::kRequesting) {
      SaveInstance(inst, instance_state::kIdle);
      Assign(job->second, inst, "started on new instance " + inst.id);
    } else {
      inst.job_id.clear();
      inst.cool_until = clock_->Now() + options_.idle_grace_s;
      SaveInstance(inst, instance_state::kIdle);
      notifier_.Notify("scheduler");
    }
  });
  return inst;
}

void Controller::TakeBackFromRestartedAgent(InstanceRecord& inst) {
  std::string what = "the agent of instance " + inst.id +
                     " started again on its machine (what it ran ended with the agent before it)";
  if (JobRecord* next = NextJobOf(inst.id); next && delivered_.count(next->id))
    ReturnUnstarted(*next, what + ": the job queued there is placed again");
  auto job = jobs_.find(inst.job_id);
  if (job == jobs_.end() || job->second.state != job_state::kRunning) return;  // not handed out yet
  // Free before the requeue: a job that may not restart again ends without
  // ending the instance, which stays for its user's next job as a new one would.
  inst.job_id.clear();
  inst.cool_until = clock_->Now() + options_.idle_grace_s;
  SaveInstance(inst, instance_state::kIdle);
  RequeueOrFail(job->second, what);
}

Status Controller::Heartbeat(const std::string& instance_id) {
  MutexLock lock(mu_);
  if (!instances_.count(instance_id))
    return NotFound("unknown or ended instance '" + instance_id + "': this agent should exit");
  TouchHeartbeat(instance_id);
  return Status::Ok();
}

std::optional<Json> Controller::WorkFor(const std::string& instance_id) {
  auto it = instances_.find(instance_id);
  if (it == instances_.end()) return Json{{"terminate", true}};
  InstanceRecord& inst = it->second;
  auto jt = jobs_.find(inst.job_id);
  if (jt == jobs_.end()) return NextWorkFor(inst);
  JobRecord& job = jt->second;
  if (job.cancel_requested && !cancel_sent_.count(job.id)) {
    cancel_sent_.insert(job.id);
    return Json{{"cancel", job.id}};
  }
  if (job.state != job_state::kStarting) return NextWorkFor(inst);
  job.state = job_state::kRunning;
  job.updated_at = clock_->Now();
  Json st = StateEvent(job.state, "running on " + inst.id);
  st["instance"] = inst.id;
  LogError(AppendJobEvents(job, {st}), "deliver");
  return Json{{"assign", AssignmentJson(job)}};
}

std::optional<Json> Controller::AssignmentAfterExit(const std::string& instance_id,
                                                    const std::string& ended_job,
                                                    int64_t ended_attempt) {
  auto it = instances_.find(instance_id);
  if (it == instances_.end()) return std::nullopt;
  auto prev = exit_answers_.find(instance_id);
  if (prev != exit_answers_.end() && prev->second.ended_job == ended_job &&
      prev->second.ended_attempt == ended_attempt) {
    // The same batch again: its answer may have been lost on its way.
    auto jt = jobs_.find(prev->second.job);
    if (jt == jobs_.end()) return std::nullopt;
    const JobRecord& job = jt->second;
    if (job.attempt != prev->second.attempt || job.instance_id != instance_id ||
        job.cancel_requested || job.run_acked > 0)
      return std::nullopt;
    return Json{{"assign", AssignmentJson(job)}};
  }
  std::optional<Json> work = FreshAssignmentAfterExit(it->second);
  if (work)
    exit_answers_[instance_id] = {ended_job, ended_attempt, (*work)["assign"]["job"],
                                  (*work)["assign"]["attempt"]};
  return work;
}

std::optional<Json> Controller::FreshAssignmentAfterExit(InstanceRecord& inst) {
  std::optional<Json> work;
  auto jt = jobs_.find(inst.job_id);
  JobRecord* next = NextJobOf(inst.id);
  if (jt != jobs_.end() && jt->second.state == job_state::kStarting &&
      !jt->second.cancel_requested) {
    work = WorkFor(inst.id);  // running now, as for a poll
  } else if (next && !next->cancel_requested && !revoke_.count(next->id) &&
             !delivered_.count(next->id)) {
    work = NextWorkFor(inst);  // queued behind the job that runs, as for a poll
  }
  // Not reached otherwise: both give an assignment when the checks hold.
  if (work && !work->contains("assign")) return std::nullopt;
  return work;
}

Json Controller::AssignmentJson(const JobRecord& job) const {
  Json assign = {{"job", job.id},
                 {"attempt", job.attempt},
                 {"command", job.spec["command"]},
                 {"bundle", job.spec["bundle"]},
                 {"env", job.spec.value("env", Json::object())}};
  if (job.spec.value("nodes", 1) > 1) assign["nodes"] = job.spec["nodes"];
  if (job.spec.contains("image"))
    assign["image"] = job.spec["image"];  // the agent runs it in a container
  if (job.sched.resume_from) assign["resume_from"] = *job.sched.resume_from;
  return assign;
}

StatusOr<Json> Controller::PollWork(const std::string& instance_id, double wait_s, bool pipeline) {
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(wait_s * 1000));
  std::string key = kInstanceKey + instance_id;
  uint64_t registration = 0;
  {
    MutexLock lock(mu_);
    registration = registrations_[instance_id];
  }
  for (;;) {
    uint64_t seen = notifier_.Version(key);
    {
      MutexLock lock(mu_);
      // The instance's agent registered again since this poll began: the
      // poll is the earlier agent's, gone (its socket too), and work
      // handed to it would be lost. It takes nothing; the new agent polls.
      if (registrations_[instance_id] != registration) return Json::object();
      TouchHeartbeat(instance_id);
      if (pipeline && instances_.count(instance_id) && pipelining_.insert(instance_id).second)
        notifier_.Notify("scheduler");  // queued jobs may go behind its job now
      if (auto work = WorkFor(instance_id)) return *work;
    }
    auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::milliseconds(0)) return Json::object();
    notifier_.Wait(key, seen, std::chrono::duration_cast<std::chrono::milliseconds>(left));
  }
}

StatusOr<int64_t> Controller::AcceptAgentRecords(const std::string& instance_id,
                                                 const std::string& job_id, int64_t attempt,
                                                 int64_t first, const Json& records) {
  YARD_ASSIGN_OR_RETURN(std::vector<AgentRecord> split, AgentRecordsFromJson(records));
  return AcceptAgentBatch(instance_id, job_id, attempt, first, split);
}

StatusOr<int64_t> Controller::AcceptAgentBatch(const std::string& instance_id,
                                               const std::string& job_id, int64_t attempt,
                                               int64_t first,
                                               const std::vector<AgentRecord>& records,
                                               Json* next_work) {
  bool holds_exit = next_work && std::any_of(records.begin(), records.end(), [](const auto& r) {
                      return !r.output && RecordKind(r.json) == "exit";
                    });
  MutexLock lock(mu_);
  // One transaction for the batch, its artifacts, the job's end and the
  // delivery of the next job. An error is found before anything is written,
  // so rolling back loses nothing.
  StatusOr<int64_t> acked = Internal("not run");
  bool changed_memory = false;
  Status s = store_->Transaction([&]() REQUIRES(mu_) -> Status {
    acked = AcceptAgentRecordsLocked(instance_id, job_id, attempt, first, records, &changed_memory);
    if (!acked.ok() || !holds_exit) return acked.status();
    if (std::optional<Json> work = AssignmentAfterExit(instance_id, job_id, attempt)) {
      *next_work = std::move(*work);
      changed_memory = true;
    }
    return Status::Ok();
  });
  // Refused before anything changed (a gap, another instance's records):
  // the agent is told why. Not stored after memory changed: see StoreDiverged.
  if (!s.ok() && changed_memory) StoreDiverged(s, "storing an agent's records");
  if (!s.ok()) return s;
  return acked;
}

namespace {

// The server's cap on one job's stored output (ControllerOptions): output
// past it is dropped, once said so in the output itself, so that a job
// printing without end cannot fill the server's disk.
struct OutputCap {
  int64_t stored;  // bytes of the job's output stored so far
  int64_t limit;   // <= 0: none
  bool capped;     // the marker was stored: output is dropped
  bool reached_now = false;

  bool Admit(size_t bytes) {
    if (!capped && (limit <= 0 || stored < limit)) {
      stored += static_cast<int64_t>(bytes);
      return true;
    }
    if (!capped) capped = reached_now = true;
    return false;
  }
  bool JustReached() {
    bool was = reached_now;
    reached_now = false;
    return was;
  }
  std::string Marker() const {
    return "this job's output passed the server's cap of " + std::to_string(limit >> 20) +
           " MiB (yard server --max-job-output-mb); what it prints from here is not stored. "
           "Its checkpoints and other files still arrive";
  }
};

}  // namespace

StatusOr<int64_t> Controller::AcceptAgentRecordsLocked(const std::string& instance_id,
                                                       const std::string& job_id, int64_t attempt,
                                                       int64_t first,
                                                       const std::vector<AgentRecord>& records,
                                                       bool* changed_memory) {
  auto it = jobs_.find(job_id);
  JobRecord job;
  if (it != jobs_.end()) {
    job = it->second;
  } else {
    YARD_ASSIGN_OR_RETURN(job, store_->GetJob(job_id));
  }
  int64_t last = first + static_cast<int64_t>(records.size()) - 1;
  // The instance that runs (or ran) the current attempt: a requeued job
  // keeps it until its next assignment, so that the late records of the
  // instance it left are still its own (ExitIsStale), never another's.
  std::string runs_on = job.sched.run_instance.empty() ? job.instance_id : job.sched.run_instance;
  if (attempt == job.attempt && runs_on != instance_id)
    return PermissionDenied("instance " + instance_id + " does not run attempt " +
                            std::to_string(attempt) + " of job " + job_id +
                            ": records are accepted only from the instance it is assigned to");
  // Records of another attempt, or of a job already final (e.g. marked lost
  // before they arrived): acknowledge so the agent stops resending, but keep
  // them out of a stream that has moved on.
  if (attempt != job.attempt) return last;
  if (first > job.run_acked + 1)
    return Status(Code::kFailedPrecondition,
                  "gap: expected record " + std::to_string(job.run_acked + 1));
  std::vector<NewEvent> events;
  std::optional<Json> exit_record;
  std::vector<std::string> owned;
  int64_t stored_to = job.run_acked;
  OutputCap cap{job.sched.output_bytes, options_.max_output_bytes_per_job, job.sched.output_capped};
  for (int64_t seq = first; seq <= last; ++seq) {
    if (seq <= job.run_acked) continue;  // a resend: already stored
    const AgentRecord& ar = records[static_cast<size_t>(seq - first)];
    stored_to = seq;
    if (ar.output) {
      if (cap.Admit(ar.output->size()))
        events.emplace_back(Json{{"kind", "output"}}, *ar.output);
      else if (cap.JustReached())
        events.emplace_back(OutputMarker(cap.Marker()));
      continue;
    }
    const Json& r = ar.json;
    if (RecordKind(r) == "exit") {
      exit_record = r;
      break;
    }
    YARD_ASSIGN_OR_RETURN(Json ev, RecordToEvent(r, instance_id));
    if (ev["kind"] == "artifact")
      for (const auto& c : ev["entry"].value("chunks", Json::array())) owned.push_back(c[0]);
    if (ev["kind"] == "artifact_part")
      for (const auto& c : ev["chunks"]) owned.push_back(c[0]);
    events.push_back(std::move(ev));
  }
  job.run_acked = std::max(job.run_acked, stored_to);
  // An artifact (or part) names chunks by hash: only chunks its user holds already
  // (the agent's uploads are its instance's user's), or else a credential
  // holder could claim another user's chunk by naming its hash.
  if (!owned.empty()) YARD_RETURN_IF_ERROR(CheckArtifactChunks(job, owned));
  std::vector<EventRecord> stored;
  JobRecord* live = it != jobs_.end() ? &it->second : &job;
  *changed_memory = true;
  live->run_acked = job.run_acked;
  live->sched.output_bytes = cap.stored;
  if (cap.capped) live->sched.output_capped = true;
  // A lone exit record: FinishJob writes the job (run_acked too) below, in
  // this same transaction.
  bool finishing_only = events.empty() && exit_record && it != jobs_.end();
  if (!finishing_only) {
    YARD_ASSIGN_OR_RETURN(
        stored, store_->AppendEventsWithOutput(job_id, std::move(events), clock_->Now(), live));
    live->last_seq = stored.empty() ? live->last_seq : stored.back().seq;
  }
  for (const auto& e : stored)
    if (e.kind == "artifact")
      LogError(store_->UpsertArtifact(job_id, e.body["dir"], e.body["entry"], e.seq), "artifact");
  notifier_.Notify(kJobKey + job_id);
  if (exit_record && it != jobs_.end() && !ExitIsStale(it->second, instance_id)) {
    const Json& x = *exit_record;
    int64_t code = x.value("exit_code", 1);
    bool revoked = x.value("revoked", false);
    bool cancelled = x.value("cancelled", false) || (revoked && it->second.cancel_requested);
    if (revoked && !it->second.cancel_requested) {
      // The agent handed back a job queued behind another, unstarted.
      ReturnUnstarted(it->second, "handed back unstarted by " + instance_id +
                                      " after waiting behind another job there: placed again");
      return job.run_acked;
    }
    std::string state = cancelled   ? job_state::kCancelled
                        : code == 0 ? job_state::kSucceeded
                                    : job_state::kFailed;
    FinishJob(it->second, state, code, x.value("message", ""));  // and reuses its instance
  }
  return job.run_acked;
}

// ---------------------------------------------------------------- helpers

bool Controller::ExitIsStale(JobRecord& job, const std::string& instance_id) {
  // The attempt is counted up when the job is next assigned, not when it is
  // requeued: until then an instance the job has left (preempted, lost) can
  // still deliver its last records under the current attempt. Its output is
  // kept; its exit (the job killed as the machine went away) is not the
  // job's end, which the next instance decides.
  if (job.state != job_state::kRequesting && job.instance_id == instance_id) return false;
  LogError(AppendJobEvents(job, {DecisionEvent("instance " + instance_id +
                                               " reported the earlier run ended after the job was "
                                               "requeued; the job goes on")}),
           "stale exit");
  return true;
}

Status Controller::CheckArtifactChunks(const JobRecord& job,
                                       const std::vector<std::string>& chunks) {
  YARD_ASSIGN_OR_RETURN(std::vector<std::string> held, store_->OwnedBlobs(job.user, chunks));
  std::set<std::string> mine(held.begin(), held.end());
  for (const std::string& h : chunks)
    if (!mine.count(h))
      return PermissionDenied(
          "an artifact of job " + job.id + " names chunk " + h +
          ", which its instance did not upload: upload a chunk before naming it");
  return Status::Ok();
}

Status Controller::AppendJobEvents(JobRecord& job, std::vector<Json> events) {
  StatusOr<std::vector<EventRecord>> stored =
      store_->AppendEvents(job.id, std::move(events), clock_->Now(), &job);
  if (!stored.ok()) return stored.status();
  if (!stored->empty()) job.last_seq = stored->back().seq;
  notifier_.Notify(kJobKey + job.id);
  return Status::Ok();
}

void Controller::Batched(const std::function<void()>& fn) {
  bool ran = false;
  Status s = store_->Transaction([&]() REQUIRES(mu_) {
    ran = true;
    fn();
    return Status::Ok();
  });
  if (!ran) fn();
  if (!s.ok()) StoreDiverged(s, "commit");
}

void Controller::StoreDiverged(const Status& s, const char* where) {
  std::fprintf(stderr,
               "yard server: %s: %s\nyard server: that change was made in memory but not stored; "
               "stopping, so that the next start goes on from what the store holds (agents keep "
               "their unacknowledged records and send them again)\n",
               where, s.ToString().c_str());
  if (options_.on_store_diverged) return options_.on_store_diverged(s);
  // Nothing more is stored from this memory. The calls in flight answer
  // with the reason (a submit says the disk is full), then the process
  // ends as after a crash: nothing half-done is written on the way out.
  store_->Poison(
      Status(s.code(), s.message() + " (the server is restarting to recover from its store)"));
  std::thread([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    std::fflush(stderr);
    std::_Exit(kExitStoreDiverged);
  }).detach();
}

void Controller::SaveInstance(InstanceRecord& inst, const std::string& state) {
  if (inst.state != state) inst.state_since = clock_->Now();
  inst.state = state;
  IndexInstance(inst);
  SyncCredentials(inst);
  LogError(store_->UpsertInstance(inst), "save instance");
}

AgentLaunchInfo Controller::LaunchInfoFor(InstanceRecord* inst) const {
  AgentLaunchInfo launch = agent_launch_;
  launch.agent_token = AgentCredentials::NewBootstrap();
  inst->bootstrap_hash = AgentCredentials::Hash(launch.agent_token);
  return launch;
}

void Controller::SyncCredentials(const InstanceRecord& inst) {
  if (!instances_.count(inst.id)) return;  // ended: EraseInstance forgot it
  auto jt = jobs_.find(inst.job_id);
  bool runs = jt != jobs_.end() && jt->second.instance_id == inst.id &&
              (jt->second.state == job_state::kStarting || jt->second.state == job_state::kRunning);
  std::string key = runs ? jt->second.id + "#" + std::to_string(jt->second.attempt) : "";
  // A job queued behind it (pipelining): its agent starts it the moment the
  // current one ends, before the server has heard, so its chunks open too.
  auto nt = next_of_.find(inst.id);
  const JobRecord* next =
      nt == next_of_.end() || !jobs_.count(nt->second) ? nullptr : &jobs_.at(nt->second);
  if (next) key += "+" + next->id + "#" + std::to_string(next->attempt);
  credentials_.Put(inst, key);
  if (key.empty() || credentials_.JobKey(inst.id) == key) return;
  AgentCredentials::ChunkSet chunks = runs ? JobChunks(jt->second) : AgentCredentials::ChunkSet();
  if (next) chunks.merge(JobChunks(*next));
  credentials_.SetJobChunks(inst.id, key, std::move(chunks));
}

}  // namespace yard
