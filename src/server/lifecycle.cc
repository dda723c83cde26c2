// Ends of things: jobs finishing or being requeued, instances cooling,
// ending or being lost, and the price ledger kept along the way.
#include <algorithm>

#include "server/controller.h"
#include "server/job_events.h"

namespace yard {

void Controller::FinishJob(JobRecord& job, const std::string& state,
                           std::optional<int64_t> exit_code, const std::string& message) {
  std::string old_state = job.state;
  job.state = state;
  CountJob(job, old_state);
  job.exit_code = exit_code;
  job.message = message;
  job.updated_at = clock_->Now();
  Json st = StateEvent(state, message);
  if (exit_code) st["exit_code"] = *exit_code;
  LogError(AppendJobEvents(job, {st}), "finish");
  Dequeue(job);
  std::string id = job.id;
  std::string user = job.user;
  std::string inst_id = job.instance_id;
  double cool = job.spec.value("cool_down_s", 0.0);
  jobs_.erase(id);  // `job` dangles from here on
  cancel_sent_.erase(id);
  notifier_.Forget(kJobKey + id);  // final: its followers have read their last news
  for (auto it = noted_.lower_bound(id + "|"); it != noted_.end() && it->rfind(id + "|", 0) == 0;)
    it = noted_.erase(it);
  auto it = instances_.find(inst_id);
  if (it != instances_.end() && it->second.job_id == id) {
    // Its next job runs: the instance stays busy (and its next slot was
    // filled again if a job waits); waiting jobs look at their own times.
    if (JobLeftInstance(it->second, cool)) return;
  } else if (auto next = next_of_.find(inst_id); next != next_of_.end() && next->second == id) {
    DropNext(inst_id);  // ended before it started there (cancelled, say)
    if (it != instances_.end()) {
      SyncCredentials(it->second);
      PipelineNow(user);
    }
  }
  if (free_entry_.count(inst_id)) {
    // Kept free (cooling): only its user's jobs can take it, and they do now,
    // in this transaction. Nothing else changed for a pass (waiting jobs
    // look again at their own times; the thread passes every 200 ms anyway).
    ReuseNow(user);
  } else {
    notifier_.Notify("scheduler");  // an instance ended, or a job slot is free
  }
}

std::optional<Json> Controller::NewestCheckpoint(const std::string& job_id) {
  StatusOr<Json> artifacts = store_->ListArtifacts(job_id);
  if (!artifacts.ok()) return std::nullopt;
  std::optional<Json> newest;
  int64_t newest_seq = -1;
  for (const auto& a : *artifacts) {
    if (a.value("dir", "") != "checkpoints") continue;
    int64_t seq = a.value("seq", int64_t{0});
    if (seq > newest_seq) {
      newest_seq = seq;
      newest = a;
    }
  }
  return newest;
}

// Files saved with the newest checkpoint: same path but for the extension
// (yard-train's epoch-003.pt and epoch-003.state). They are restored with it.
Json Controller::CheckpointSiblings(const std::string& job_id, const Json& newest) {
  auto stem = [](const std::string& path) {
    size_t slash = path.rfind('/'), dot = path.rfind('.');
    return (dot == std::string::npos || (slash != std::string::npos && dot < slash))
               ? path
               : path.substr(0, dot);
  };
  std::string want = stem(newest.value("path", ""));
  Json out = Json::array();
  StatusOr<Json> artifacts = store_->ListArtifacts(job_id);
  if (!artifacts.ok()) return out;
  for (const auto& a : *artifacts) {
    std::string path = a["entry"].value("path", "");
    if (a.value("dir", "") == "checkpoints" && path != newest.value("path", "") &&
        stem(path) == want)
      out.push_back(a["entry"]);
  }
  return out;
}

void Controller::RequeueOrFail(JobRecord& job, const std::string& what_happened) {
  int64_t restarts = job.sched.restarts;
  int max_restarts = job.spec.value("max_restarts", options_.default_max_restarts);
  if (job.cancel_requested || restarts >= max_restarts) {
    FinishJob(job, job.cancel_requested ? job_state::kCancelled : job_state::kFailed, std::nullopt,
              what_happened + ". The job did not finish" +
                  (job.cancel_requested ? ""
                                        : " (restarted " + std::to_string(restarts) +
                                              " times, the limit; raise it with --max-restarts)") +
                  "; its output and artifacts so far are kept (`yard logs " + job.id +
                  "`, `yard fetch " + job.id + "`)");
    return;
  }
  job.sched.restarts = restarts + 1;
  EndRequest(job);
  job.sched.machine = 0;
  job.sched.attempts.clear();
  std::string resume = "from the start (no checkpoint yet)";
  if (std::optional<Json> ckpt = NewestCheckpoint(job.id)) {
    job.sched.resume_from = Json{{"dir", "checkpoints"},
                                 {"entry", (*ckpt)["entry"]},
                                 {"siblings", CheckpointSiblings(job.id, (*ckpt)["entry"])}};
    resume = "from checkpoints/" + (*ckpt)["entry"].value("path", "");
  }
  job.state = job_state::kRequesting;
  job.instance_id.clear();
  job.updated_at = clock_->Now();
  std::string msg = what_happened + ": requeued (restart " + std::to_string(restarts + 1) + " of " +
                    std::to_string(max_restarts) + "), resuming " + resume;
  LogError(AppendJobEvents(job, {OutputMarker(msg), StateEvent(job.state, msg)}), "requeue");
  Enqueue(job, /*front=*/true);  // it was placed before anything queued now
  notifier_.Notify("scheduler");
}

void Controller::ReleaseInstance(InstanceRecord& inst, double cool_down_s) {
  inst.job_id.clear();
  Provider* p = ProviderFor(inst.machine_type);
  bool cloud = p && p->GrantsLater();
  if (inst.state == instance_state::kRequested ||
      (cloud && inst.state == instance_state::kProvisioning)) {
    // Not granted yet, or a cloud machine still booting (minutes, billed):
    // nothing is worth waiting for.
    TerminateInstance(inst, "its job ended before the instance was ready");
    return;
  }
  if (inst.state == instance_state::kProvisioning) {
    // Its job went away before it registered: it idles briefly on arrival.
    SaveInstance(inst, instance_state::kProvisioning);
    return;
  }
  if (cool_down_s > 0) {
    CloseInterval(inst);
    OpenInterval(inst, "cooling", "");
    inst.cool_until = clock_->Now() + cool_down_s;
    SaveInstance(inst, instance_state::kCooling);
  } else {
    TerminateInstance(inst, "its job ended and no cool-down was asked");
  }
}

void Controller::TerminateInstance(InstanceRecord& inst, const std::string& why) {
  Provider* p = ProviderFor(inst.machine_type);
  if (p) LogError(Counted(p, "terminate", p->Terminate(inst)), "terminate");
  CloseInterval(inst);
  inst.info["ended_because"] = why;
  SaveInstance(inst, instance_state::kTerminated);
  notifier_.Notify(kInstanceKey + inst.id);
  EraseInstance(inst.id);  // `inst` dangles from here on
}

void Controller::MarkLost(InstanceRecord& inst, const std::string& reason, bool preempted) {
  std::string id = inst.id;
  std::string job_id = inst.job_id;
  std::string next_id = DropNext(id);  // queued there, perhaps not started: requeued too
  Provider* p = ProviderFor(inst.machine_type);
  if (p && !preempted)
    LogError(Counted(p, "terminate", p->Terminate(inst)), "terminate lost instance");
  CloseInterval(inst);
  inst.info["lost_because"] = reason;
  SaveInstance(inst, instance_state::kLost);
  EraseInstance(id);  // `inst` dangles from here on
  notifier_.Notify(kInstanceKey + id);
  std::string what =
      "instance " + id + (preempted ? " was preempted (" : " was lost (") + reason + ")";
  if (auto next = jobs_.find(next_id); next != jobs_.end())
    RequeueOrFail(next->second, what + " with this job queued behind its job " + job_id);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  JobRecord& job = it->second;
  if (job.state == job_state::kRequesting) {
    job.instance_id.clear();  // its reserved instance never came: place it again
    LogError(AppendJobEvents(job, {DecisionEvent(what + ": requesting another")}), "lost");
    EnterGroup(job);  // back at its place in the queue
    notifier_.Notify("scheduler");
    return;
  }
  RequeueOrFail(job, what);
}

Status Controller::AgentPreempted(const std::string& instance_id, const std::string& reason) {
  MutexLock lock(mu_);
  auto it = instances_.find(instance_id);
  if (it == instances_.end())
    return NotFound("no live instance '" + instance_id + "' (ended or lost already)");
  Batched([&]() REQUIRES(mu_) {
    Provider* p = ProviderFor(it->second.machine_type);
    if (p) LogError(p->Terminate(it->second), "terminate preempted instance");
    MarkLost(it->second, reason, /*preempted=*/true);
  });
  return Status::Ok();
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
    double silent = SilentSeconds(id);
    if (p) CountCall(p, "is_alive", true);
    if (p && !p->IsAlive(inst)) {
      MarkLost(inst, "its agent process is gone", false);
    } else if (inst.state == instance_state::kRequested) {
      // Its job's wait_request_s decides (WithdrawRequestedInstance).
    } else if (inst.state == instance_state::kProvisioning) {
      if (silent > options_.provisioning_timeout_s)
        MarkLost(inst,
                 "it did not register within " + FormatSeconds(options_.provisioning_timeout_s),
                 false);
    } else if ((p ? p->CountedSilence(inst, silent) : silent) > options_.heartbeat_timeout_s) {
      MarkLost(inst, "no heartbeat for " + FormatSeconds(silent), false);
    } else if ((inst.state == instance_state::kCooling || inst.state == instance_state::kIdle) &&
               inst.job_id.empty() && now >= inst.cool_until) {
      TerminateInstance(
          inst, inst.state == instance_state::kCooling ? "its cool-down ended" : "it stayed idle");
    }
  }
}

StatusOr<std::vector<std::string>> Controller::EndIdleInstances(const std::string& user,
                                                                const std::string& id) {
  MutexLock lock(mu_);
  std::vector<std::string> ended;
  std::vector<std::string> candidates;
  for (const auto& [iid, inst] : instances_)
    if (inst.user == user && (id.empty() || iid == id)) candidates.push_back(iid);
  if (!id.empty() && candidates.empty())
    return NotFound("no live instance '" + id + "' of yours: see `yard machines`");
  for (const auto& iid : candidates) {
    InstanceRecord& inst = instances_[iid];
    bool idle = inst.state == instance_state::kCooling || inst.state == instance_state::kIdle;
    if (!idle || !inst.job_id.empty()) {
      if (!id.empty())
        return FailedPrecondition(iid + " is " + inst.state +
                                  ", not cooling: cancel its job instead");
      continue;
    }
    TerminateInstance(inst, "ended by its user (yard down)");
    ended.push_back(iid);
  }
  return ended;
}

// ---------------------------------------------------------------- ledger

MarketPrices Controller::PricesOf(const InstanceRecord& inst) const {
  const MachineType* t = catalog_.Find(inst.machine_type);
  MarketPrices p;
  if (t) {
    p.spot = t->spot_price;
    p.on_demand = t->on_demand_price;
  }
  p.is_spot = inst.info.value("market", "") == "spot";
  if (p.is_spot && p.spot == 0) {  // the catalog gives none: the provider's (a cloud's price)
    auto it = t ? providers_.find(t->provider) : providers_.end();
    if (it != providers_.end())
      if (std::optional<double> live = it->second->SpotPricePerHour(inst)) p.spot = *live;
  }
  return p;
}

double Controller::CurrentPricePerHour(const InstanceRecord& inst) const {
  if (inst.info.value("interval_kind", "") != "cooling") return RunningPricePerHour(PricesOf(inst));
  double t = clock_->Now() - inst.info.value("interval_start", clock_->Now());
  return CoolingPricePerHour(PricesOf(inst), t, options_.pricing);
}

void Controller::OpenInterval(InstanceRecord& inst, const std::string& kind,
                              const std::string& job_id) {
  inst.info["interval_kind"] = kind;
  inst.info["interval_start"] = clock_->Now();
  inst.info["interval_job"] = job_id;
}

namespace {

LedgerEntry IntervalEntry(const InstanceRecord& inst, double now, const MarketPrices& prices,
                          const PricingSettings& pricing) {
  LedgerEntry e;
  e.instance_id = inst.id;
  e.user = inst.user;
  e.job_id = inst.info.value("interval_job", "");
  e.kind = inst.info.value("interval_kind", "running");
  e.machine_type = inst.machine_type;
  e.market = prices.is_spot ? "spot" : "on-demand";
  e.start = inst.info.value("interval_start", now);
  e.end = now;
  e.cost = e.kind == "cooling" ? CoolingCost(prices, 0, e.end - e.start, pricing)
                               : RunningCost(prices, e.start, e.end);
  return e;
}

Json EntryJson(const LedgerEntry& e, bool open) {
  return {{"instance", e.instance_id},
          {"job", e.job_id},
          {"kind", e.kind},
          {"machine_type", e.machine_type},
          {"market", e.market},
          {"start", e.start},
          {"end", e.end},
          {"seconds", e.end - e.start},
          {"cost", e.cost},
          {"open", open}};
}

}  // namespace

void Controller::CloseInterval(InstanceRecord& inst) {
  if (!inst.info.contains("interval_kind")) return;
  LogError(
      store_->AddLedgerEntry(IntervalEntry(inst, clock_->Now(), PricesOf(inst), options_.pricing)),
      "ledger");
  inst.info.erase("interval_kind");
  inst.info.erase("interval_start");
  inst.info.erase("interval_job");
}

StatusOr<Json> Controller::CostFor(const std::string& user) {
  YARD_ASSIGN_OR_RETURN(std::vector<LedgerEntry> closed, store_->LedgerFor(user));
  MutexLock lock(mu_);
  Json entries = Json::array();
  std::map<std::string, double> by_job, by_instance, by_kind;
  double total = 0;
  auto add = [&](const LedgerEntry& e, bool open) {
    entries.push_back(EntryJson(e, open));
    if (!e.job_id.empty()) by_job[e.job_id] += e.cost;
    by_instance[e.instance_id] += e.cost;
    by_kind[e.kind] += e.cost;
    total += e.cost;
  };
  for (const auto& e : closed) add(e, false);
  double now = clock_->Now();
  for (const auto& [id, inst] : instances_)
    if (inst.user == user && inst.info.contains("interval_kind"))
      add(IntervalEntry(inst, now, PricesOf(inst), options_.pricing), true);
  return Json{
      {"user", user},       {"entries", entries}, {"by_job", by_job}, {"by_instance", by_instance},
      {"by_kind", by_kind}, {"total", total},     {"as_of", now}};
}

}  // namespace yard
