#include "server/controller.h"

#include <algorithm>
#include <cstdio>

#include "common/manifest.h"

namespace yard {
namespace {

constexpr const char* kJobKey = "job:";
constexpr const char* kInstanceKey = "inst:";

Json StateEvent(const std::string& state, const std::string& message) {
  return {{"kind", "state"}, {"state", state}, {"message", message}};
}

Json DecisionEvent(const std::string& message) {
  return {{"kind", "decision"}, {"message", message}};
}

std::string FormatSeconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.0f s", s);
  return buf;
}

}  // namespace

Controller::Controller(Store* store, BlobStore* blobs, Catalog catalog,
                       std::map<std::string, Provider*> providers, AgentLaunchInfo agent_launch,
                       const Clock* clock, ControllerOptions options)
    : store_(store), blobs_(blobs), catalog_(std::move(catalog)), providers_(std::move(providers)),
      agent_launch_(std::move(agent_launch)), clock_(clock), options_(std::move(options)) {}

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
  return it == providers_.end() ? 0 : it->second->Available(type);
}

// ---------------------------------------------------------------- recovery

Status Controller::Recover() {
  std::lock_guard<std::mutex> lock(mu_);
  YARD_ASSIGN_OR_RETURN(auto jobs, store_->JobsInStates({job_state::kWaiting,
      job_state::kRequesting, job_state::kStarting, job_state::kRunning}));
  for (auto& j : jobs) {
    if (j.state == job_state::kRequesting) queue_.push_back(j.id);
    jobs_[j.id] = std::move(j);
  }
  YARD_ASSIGN_OR_RETURN(auto insts, store_->ListInstances(false));
  double now = clock_->Now();
  for (auto& inst : insts) {
    instances_[inst.id] = inst;
    heartbeats_[inst.id] = now;  // a fresh grace: agents are reconnecting
    Provider* p = ProviderFor(inst.machine_type);
    bool alive = p && (inst.state == instance_state::kTerminating ? false : p->Adopt(inst));
    if (inst.state == instance_state::kTerminating) {
      if (p) LogError(p->Terminate(inst), "terminate on recovery");
      SaveInstance(instances_[inst.id], instance_state::kTerminated);
    } else if (!alive) {
      MarkLost(instances_[inst.id], "its agent was gone when the server restarted");
    }
  }
  return Status::Ok();
}

void Controller::Start() {
  stop_ = false;
  thread_ = std::thread([this] {
    uint64_t seen = notifier_.Version("scheduler");
    while (!stop_) {
      {
        std::lock_guard<std::mutex> lock(mu_);
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

void Controller::Pass() {
  MonitorInstances();
  PlaceQueuedJobs();
}

// ---------------------------------------------------------------- user side

StatusOr<Json> Controller::ValidateSpec(const std::string& user, const Json& spec) {
  Json out = spec;
  if (!spec.contains("command") || !spec["command"].is_array() || spec["command"].empty())
    return InvalidArgument("'command' must be a non-empty list of strings");
  for (const auto& a : spec["command"])
    if (!a.is_string()) return InvalidArgument("'command' must be a non-empty list of strings");
  if (!spec.contains("bundle")) return InvalidArgument("missing field 'bundle' (the job's files)");
  YARD_ASSIGN_OR_RETURN(Manifest bundle, Manifest::FromJson(spec["bundle"]));
  YARD_RETURN_IF_ERROR(ValidateManifest(bundle).WithContext("bundle"));
  std::vector<std::string> hashes = bundle.ChunkHashes();
  YARD_ASSIGN_OR_RETURN(auto owned, store_->OwnedBlobs(user, hashes));
  if (owned.size() != hashes.size())
    return FailedPrecondition(std::to_string(hashes.size() - owned.size()) +
                              " chunks of the bundle were not uploaded: upload them with "
                              "PUT /v1/blobs/{sha256} first");
  Json machines = spec.value("machines", Json::array());
  if (!machines.is_array()) return InvalidArgument("'machines' must be a list of machine ids");
  for (const auto& m : machines) {
    if (!m.is_string()) return InvalidArgument("'machines' must be a list of machine ids");
    YARD_ASSIGN_OR_RETURN(MachineRequest req, ParseMachineRequest(m.get<std::string>()));
    if (!catalog_.Find(req.type))
      return InvalidArgument("unknown machine type '" + req.type + "' (known: " +
                             catalog_.NamesForHelp() + "; see `yard machines`)");
  }
  out["machines"] = machines;
  if (spec.contains("env")) {
    if (!spec["env"].is_object()) return InvalidArgument("'env' must be an object of strings");
    for (const auto& [k, v] : spec["env"].items())
      if (!v.is_string()) return InvalidArgument("env '" + k + "' must be a string");
  }
  if (spec.contains("description") && !spec["description"].is_string())
    return InvalidArgument("'description' must be a string");
  double cool = spec.value("cool_down_s", 0.0);
  if (!spec.value("cool_down_s", Json(0)).is_number() || cool < 0)
    return InvalidArgument("'cool_down_s' must be a number >= 0");
  return out;
}

StatusOr<JobRecord> Controller::SubmitJob(const std::string& user, const Json& spec) {
  YARD_ASSIGN_OR_RETURN(Json valid, ValidateSpec(user, spec));
  std::vector<Json> first_events;
  if (valid["machines"].empty()) {
    valid["machines"] = Json::array({options_.default_machine});
    first_events.push_back(DecisionEvent("no machines given: using the default machine type '" +
                                         options_.default_machine + "'"));
  }
  JobRecord job;
  job.id = NewId("job");
  job.user = user;
  job.state = job_state::kRequesting;
  job.description = valid.value("description", "");
  job.spec = std::move(valid);
  job.created_at = job.updated_at = clock_->Now();
  first_events.insert(first_events.begin(), StateEvent(job.state, "queued"));
  std::lock_guard<std::mutex> lock(mu_);
  YARD_RETURN_IF_ERROR(store_->InsertJob(job));
  YARD_RETURN_IF_ERROR(AppendJobEvents(job, std::move(first_events)));
  jobs_[job.id] = job;
  queue_.push_back(job.id);
  PlaceQueuedJobs();  // dispatch inline: a warm instance starts the job now
  return jobs_.count(job.id) ? jobs_[job.id] : job;
}

StatusOr<JobRecord> Controller::GetJobFor(const std::string& user, const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(id);
    if (it != jobs_.end()) {
      if (it->second.user != user) return NotFound("no job '" + id + "': list yours with `yard jobs`");
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
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return snapshot;  // already finished: nothing to cancel
  JobRecord& job = it->second;
  if (job.state == job_state::kWaiting || job.state == job_state::kRequesting) {
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
  for (const auto& inst : all)
    if (inst.user == user || (inst.user.empty() && !include_ended)) out.push_back(inst.ToApiJson(now));
  return out;
}

// ---------------------------------------------------------------- placement

void Controller::PlaceQueuedJobs() {
  std::deque<std::string> still_queued;
  while (!queue_.empty()) {
    std::string id = queue_.front();
    queue_.pop_front();
    auto it = jobs_.find(id);
    if (it == jobs_.end() || it->second.state != job_state::kRequesting) continue;
    JobRecord& job = it->second;
    bool placed = !job.instance_id.empty() ? false : (TryReuseInstance(job) || TryLaunchInstance(job));
    if (!placed && job.state == job_state::kRequesting) still_queued.push_back(id);
  }
  queue_ = std::move(still_queued);
}

bool Controller::TryReuseInstance(JobRecord& job) {
  // Earlier-listed types first; any idle or cooling instance of this user.
  for (const auto& m : job.spec["machines"]) {
    StatusOr<MachineRequest> req = ParseMachineRequest(m.get<std::string>());
    if (!req.ok()) continue;
    for (auto& [id, inst] : instances_) {
      bool free = inst.state == instance_state::kIdle || inst.state == instance_state::kCooling;
      bool mine = inst.user == job.user || inst.user.empty();
      if (free && mine && inst.job_id.empty() && inst.machine_type == req->type) {
        bool was_cooling = inst.state == instance_state::kCooling;
        Assign(job, inst, was_cooling ? "took cooling instance " + id : "took idle instance " + id);
        return true;
      }
    }
  }
  return false;
}

bool Controller::TryLaunchInstance(JobRecord& job) {
  // The foundation requests the first listed type and waits for capacity;
  // ordered fallback between types is the scheduler's next step.
  StatusOr<MachineRequest> req = ParseMachineRequest(job.spec["machines"][0].get<std::string>());
  const MachineType* type = req.ok() ? catalog_.Find(req->type) : nullptr;
  Provider* provider = type ? ProviderFor(type->name) : nullptr;
  if (!type || !provider) return false;
  if (provider->Available(*type) <= 0) {
    if (capacity_noted_.insert(job.id).second)
      LogError(AppendJobEvents(job, {DecisionEvent("no free capacity for " + type->name +
                                                   " now: waiting for an instance")}),
               "decision");
    return false;
  }
  InstanceRecord inst;
  inst.id = NewId("inst");
  inst.machine_type = type->name;
  inst.provider = type->provider;
  inst.user = job.user;
  inst.job_id = job.id;  // reserved for this job until it registers
  inst.created_at = inst.state_since = clock_->Now();
  Status s = provider->Launch(*type, agent_launch_, &inst);
  if (!s.ok()) {
    LogError(AppendJobEvents(job, {DecisionEvent("could not start " + type->name + ": " +
                                                 s.message())}), "decision");
    return false;
  }
  instances_[inst.id] = inst;
  heartbeats_[inst.id] = clock_->Now();
  SaveInstance(instances_[inst.id], instance_state::kProvisioning);
  job.instance_id = inst.id;
  job.machine_type = type->name;
  job.updated_at = clock_->Now();
  LogError(AppendJobEvents(job, {DecisionEvent("requested a new " + type->name + " instance (" +
                                               inst.id + ")")}), "decision");
  return false;  // placed once the agent registers
}

void Controller::Assign(JobRecord& job, InstanceRecord& inst, const std::string& how) {
  job.state = job_state::kStarting;
  job.instance_id = inst.id;
  job.machine_type = inst.machine_type;
  job.attempt += 1;
  job.run_acked = 0;
  job.updated_at = clock_->Now();
  inst.user = job.user;
  inst.job_id = job.id;
  SaveInstance(inst, instance_state::kBusy);
  Json st = StateEvent(job.state, how);
  st["instance"] = inst.id;
  st["machine_type"] = inst.machine_type;
  LogError(AppendJobEvents(job, {st}), "assign");
  capacity_noted_.erase(job.id);
  notifier_.Notify(kInstanceKey + inst.id);
}

void Controller::FinishJob(JobRecord& job, const std::string& state,
                           std::optional<int64_t> exit_code, const std::string& message) {
  job.state = state;
  job.exit_code = exit_code;
  job.message = message;
  job.updated_at = clock_->Now();
  Json st = StateEvent(state, message);
  if (exit_code) st["exit_code"] = *exit_code;
  LogError(AppendJobEvents(job, {st}), "finish");
  std::string id = job.id;
  std::string inst_id = job.instance_id;
  double cool = job.spec.value("cool_down_s", 0.0);
  jobs_.erase(id);
  capacity_noted_.erase(id);
  cancel_sent_.erase(id);
  auto it = instances_.find(inst_id);
  if (it != instances_.end() && it->second.job_id == id) ReleaseInstance(it->second, cool);
  notifier_.Notify("scheduler");
}

void Controller::ReleaseInstance(InstanceRecord& inst, double cool_down_s) {
  inst.job_id.clear();
  if (inst.state == instance_state::kProvisioning) {
    // Its job went away before it registered: it idles briefly on arrival.
    SaveInstance(inst, instance_state::kProvisioning);
    return;
  }
  if (cool_down_s > 0) {
    inst.cool_until = clock_->Now() + cool_down_s;
    SaveInstance(inst, instance_state::kCooling);
  } else {
    TerminateInstance(inst, "its job ended and no cool-down was asked");
  }
}

void Controller::TerminateInstance(InstanceRecord& inst, const std::string& why) {
  Provider* p = ProviderFor(inst.machine_type);
  if (p) LogError(p->Terminate(inst), "terminate");
  inst.info["ended_because"] = why;
  SaveInstance(inst, instance_state::kTerminated);
  notifier_.Notify(kInstanceKey + inst.id);
  std::string id = inst.id;
  instances_.erase(id);
  heartbeats_.erase(id);
}

void Controller::MarkLost(InstanceRecord& inst, const std::string& reason) {
  std::string id = inst.id;
  std::string job_id = inst.job_id;
  Provider* p = ProviderFor(inst.machine_type);
  if (p) LogError(p->Terminate(inst), "terminate lost instance");
  inst.info["lost_because"] = reason;
  SaveInstance(inst, instance_state::kLost);
  instances_.erase(id);
  heartbeats_.erase(id);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  JobRecord& job = it->second;
  if (job.state == job_state::kRequesting) {
    job.instance_id.clear();  // its reserved instance never came: place it again
    LogError(AppendJobEvents(job, {DecisionEvent("instance " + id + " was lost (" + reason +
                                                 "): requesting another")}), "lost");
    return;
  }
  FinishJob(job, job_state::kFailed, std::nullopt,
            "instance " + id + " was lost: " + reason +
                ". The job did not finish; its output and artifacts so far are kept "
                "(`yard logs " + job.id + "`, `yard fetch " + job.id + "`)");
}

void Controller::MonitorInstances() {
  double now = clock_->Now();
  std::vector<std::string> ids;
  for (const auto& [id, inst] : instances_) ids.push_back(id);
  for (const auto& id : ids) {
    auto it = instances_.find(id);
    if (it == instances_.end()) continue;
    InstanceRecord& inst = it->second;
    Provider* p = ProviderFor(inst.machine_type);
    double silent = now - heartbeats_[id];
    if (p && !p->IsAlive(inst)) {
      MarkLost(inst, "its agent process is gone");
    } else if (inst.state == instance_state::kProvisioning) {
      if (silent > options_.provisioning_timeout_s)
        MarkLost(inst, "it did not register within " + FormatSeconds(options_.provisioning_timeout_s));
    } else if (silent > options_.heartbeat_timeout_s) {
      MarkLost(inst, "no heartbeat for " + FormatSeconds(silent));
    } else if ((inst.state == instance_state::kCooling || inst.state == instance_state::kIdle) &&
               inst.job_id.empty() && now >= inst.cool_until) {
      TerminateInstance(inst, inst.state == instance_state::kCooling ? "its cool-down ended"
                                                                      : "it stayed idle");
    }
  }
}

// ---------------------------------------------------------------- agent side

StatusOr<InstanceRecord> Controller::RegisterAgent(const std::string& instance_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = instances_.find(instance_id);
  if (it == instances_.end())
    return NotFound("unknown or ended instance '" + instance_id + "': this agent should exit");
  InstanceRecord& inst = it->second;
  heartbeats_[instance_id] = clock_->Now();
  if (inst.state == instance_state::kProvisioning) {
    auto job = jobs_.find(inst.job_id);
    if (job != jobs_.end() && job->second.state == job_state::kRequesting) {
      SaveInstance(inst, instance_state::kIdle);
      Assign(job->second, inst, "started on new instance " + inst.id);
    } else {
      inst.job_id.clear();
      inst.cool_until = clock_->Now() + options_.idle_grace_s;
      SaveInstance(inst, instance_state::kIdle);
      notifier_.Notify("scheduler");
    }
  }
  return inst;
}

Status Controller::Heartbeat(const std::string& instance_id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!instances_.count(instance_id))
    return NotFound("unknown or ended instance '" + instance_id + "': this agent should exit");
  heartbeats_[instance_id] = clock_->Now();
  return Status::Ok();
}

std::optional<Json> Controller::WorkFor(const std::string& instance_id) {
  auto it = instances_.find(instance_id);
  if (it == instances_.end()) return Json{{"terminate", true}};
  InstanceRecord& inst = it->second;
  auto jt = jobs_.find(inst.job_id);
  if (jt == jobs_.end()) return std::nullopt;
  JobRecord& job = jt->second;
  if (job.cancel_requested && !cancel_sent_.count(job.id)) {
    cancel_sent_.insert(job.id);
    return Json{{"cancel", job.id}};
  }
  if (job.state != job_state::kStarting) return std::nullopt;
  job.state = job_state::kRunning;
  job.updated_at = clock_->Now();
  Json st = StateEvent(job.state, "running on " + inst.id);
  st["instance"] = inst.id;
  LogError(AppendJobEvents(job, {st}), "deliver");
  Json assign = {{"job", job.id}, {"attempt", job.attempt}, {"command", job.spec["command"]},
                 {"bundle", job.spec["bundle"]}, {"env", job.spec.value("env", Json::object())}};
  return Json{{"assign", assign}};
}

StatusOr<Json> Controller::PollWork(const std::string& instance_id, double wait_s) {
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(wait_s * 1000));
  std::string key = kInstanceKey + instance_id;
  for (;;) {
    uint64_t seen = notifier_.Version(key);
    {
      std::lock_guard<std::mutex> lock(mu_);
      heartbeats_[instance_id] = clock_->Now();
      if (auto work = WorkFor(instance_id)) return *work;
    }
    auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::milliseconds(0)) return Json::object();
    notifier_.Wait(key, seen, std::chrono::duration_cast<std::chrono::milliseconds>(left));
  }
}

namespace {

// Checks one agent record and turns it into an event (exit records are
// handled by the caller). InvalidArgument names the problem.
StatusOr<Json> RecordToEvent(const Json& r, const std::string& instance_id) {
  if (!r.is_object() || !r.contains("kind") || !r["kind"].is_string())
    return InvalidArgument("each record needs a string 'kind'");
  std::string kind = r["kind"];
  if (kind == "output") {
    if (!r.contains("data") || !r["data"].is_string()) return InvalidArgument("output record needs 'data'");
    return Json{{"kind", "output"}, {"data", r["data"]}};
  }
  if (kind == "metric") {
    if (!r.contains("values") || !r["values"].is_object())
      return InvalidArgument("metric record needs an object 'values'");
    return Json{{"kind", "metric"}, {"values", r["values"]}, {"instance", instance_id}};
  }
  if (kind == "artifact") {
    std::string dir = r.value("dir", "");
    if (dir != "checkpoints" && dir != "logs" && dir != "outputs")
      return InvalidArgument("artifact 'dir' must be checkpoints, logs or outputs");
    YARD_ASSIGN_OR_RETURN(FileEntry e, FileEntryFromJson(r.value("entry", Json())));
    Manifest m;
    m.files.push_back(e);
    YARD_RETURN_IF_ERROR(ValidateManifest(m).WithContext("artifact"));
    return Json{{"kind", "artifact"}, {"dir", dir}, {"entry", FileEntryToJson(e)},
                {"instance", instance_id}};
  }
  return InvalidArgument("unknown record kind '" + kind + "'");
}

}  // namespace

StatusOr<int64_t> Controller::AcceptAgentRecords(const std::string& instance_id,
                                                 const std::string& job_id, int64_t attempt,
                                                 int64_t first, const Json& records) {
  if (!records.is_array()) return InvalidArgument("'records' must be a list");
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(job_id);
  JobRecord job;
  if (it != jobs_.end()) {
    job = it->second;
  } else {
    YARD_ASSIGN_OR_RETURN(job, store_->GetJob(job_id));
  }
  int64_t last = first + static_cast<int64_t>(records.size()) - 1;
  // Records of another attempt, or of a job already final (e.g. marked lost
  // before they arrived): acknowledge so the agent stops resending, but keep
  // them out of a stream that has moved on.
  if (attempt != job.attempt) return last;
  if (first > job.run_acked + 1)
    return Status(Code::kFailedPrecondition, "gap: expected record " + std::to_string(job.run_acked + 1));
  std::vector<Json> events;
  std::optional<Json> exit_record;
  std::vector<std::string> owned;
  int64_t stored_to = job.run_acked;
  for (int64_t seq = first; seq <= last; ++seq) {
    if (seq <= job.run_acked) continue;  // a resend: already stored
    const Json& r = records[static_cast<size_t>(seq - first)];
    stored_to = seq;
    if (r.is_object() && r.value("kind", "") == "exit") { exit_record = r; break; }
    YARD_ASSIGN_OR_RETURN(Json ev, RecordToEvent(r, instance_id));
    if (ev["kind"] == "artifact")
      for (const auto& c : ev["entry"].value("chunks", Json::array())) owned.push_back(c[0]);
    events.push_back(std::move(ev));
  }
  job.run_acked = std::max(job.run_acked, stored_to);
  YARD_RETURN_IF_ERROR(store_->AddBlobOwners(job.user, owned));
  std::vector<EventRecord> stored;
  {
    JobRecord* live = it != jobs_.end() ? &it->second : &job;
    live->run_acked = job.run_acked;
    YARD_ASSIGN_OR_RETURN(stored, store_->AppendEvents(job_id, std::move(events), clock_->Now(), live));
    live->last_seq = stored.empty() ? live->last_seq : stored.back().seq;
  }
  for (const auto& e : stored)
    if (e.kind == "artifact")
      LogError(store_->UpsertArtifact(job_id, e.body["dir"], e.body["entry"], e.seq), "artifact");
  notifier_.Notify(kJobKey + job_id);
  if (exit_record && it != jobs_.end()) {
    const Json& x = *exit_record;
    int64_t code = x.value("exit_code", 1);
    bool cancelled = x.value("cancelled", false);
    std::string state = cancelled ? job_state::kCancelled
                        : code == 0 ? job_state::kSucceeded : job_state::kFailed;
    FinishJob(it->second, state, code, x.value("message", ""));
  }
  return job.run_acked;
}

// ---------------------------------------------------------------- helpers

Status Controller::AppendJobEvents(JobRecord& job, std::vector<Json> events) {
  StatusOr<std::vector<EventRecord>> stored =
      store_->AppendEvents(job.id, std::move(events), clock_->Now(), &job);
  if (!stored.ok()) return stored.status();
  if (!stored->empty()) job.last_seq = stored->back().seq;
  notifier_.Notify(kJobKey + job.id);
  return Status::Ok();
}

void Controller::SaveInstance(InstanceRecord& inst, const std::string& state) {
  if (inst.state != state) inst.state_since = clock_->Now();
  inst.state = state;
  LogError(store_->UpsertInstance(inst), "save instance");
}

}  // namespace yard
