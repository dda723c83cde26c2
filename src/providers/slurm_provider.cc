#include "providers/slurm_provider.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <sstream>

#include "common/files.h"
#include "common/process.h"
#include "providers/remote_agent.h"
#include "providers/settings_json.h"

namespace yard {

using Json = nlohmann::json;

namespace {

// A job whose squeue row vanished this long (seconds) after sbatch is gone.
constexpr double kVanishGraceS = 10;
constexpr auto kToolTimeout = std::chrono::seconds(30);

bool IsRunning(const std::string& s) {
  return s == "RUNNING" || s == "CONFIGURING" || s == "RESIZING" || s == "SIGNALING" ||
         s == "STAGE_OUT";
}

bool IsRequeued(const std::string& s) {
  return s == "REQUEUED" || s == "REQUEUE_FED" || s == "REQUEUE_HOLD" || s == "SPECIAL_EXIT" ||
         s == "RESV_DEL_HOLD";
}

// What a final (or stopping) state means for the instance, in words.
std::string Meaning(const std::string& s) {
  static const std::map<std::string, std::string> kWords = {
      {"NODE_FAIL", "a node of the allocation failed"},
      {"PREEMPTED", "Slurm preempted it"},
      {"TIMEOUT", "the allocation reached its time limit"},
      {"DEADLINE", "the allocation reached its deadline"},
      {"CANCELLED", "it was cancelled outside Trainyard"},
      {"OUT_OF_MEMORY", "it ran out of memory"},
      {"BOOT_FAIL", "a node failed to boot"},
      {"SUSPENDED", "Slurm suspended it"},
      {"STOPPED", "Slurm stopped it"},
      {"COMPLETED", "its agent exited"},
      {"COMPLETING", "its agent exited"},
      {"FAILED", "its agent exited with an error"},
  };
  auto it = kWords.find(s);
  if (it != kWords.end()) return it->second;
  return IsRequeued(s) ? "Slurm requeued it" : "it ended";
}

std::string StripNodeState(std::string s) {
  while (!s.empty() && std::string("*~#!%$@^-").find(s.back()) != std::string::npos) s.pop_back();
  return s;
}

std::string Join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream ss(text);
  for (std::string line; std::getline(ss, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

std::vector<std::string> SplitOn(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i)
    if (i == s.size() || s[i] == sep) {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  return out;
}

}  // namespace

// ------------------------------------------------------------ settings

StatusOr<SlurmSettings> SlurmSettings::FromJson(const Json& j, const std::string& home) {
  SettingsReader r(j, "providers.slurm");
  SlurmSettings s;
  s.work_dir = r.String("work_dir", home + "/instances");
  s.server_home = home;
  s.yard_binary = r.String("yard_binary", "");
  s.server_url = r.String("server_url", "");
  s.bin_dir = r.String("bin_dir", "");
  s.poll_interval_s = r.Number("poll_interval_s", 1.0);
  s.pending_timeout_s = r.Number("pending_timeout_s", 120);
  s.sbatch_args = r.Strings("sbatch_args");
  YARD_RETURN_IF_ERROR(r.Finish());
  if (s.poll_interval_s <= 0) return InvalidArgument("providers.slurm.poll_interval_s must be > 0");
  return s;
}

std::string SlurmAgentConfinementFlags(const SlurmSettings& settings) {
  std::string flags = RemoteAgentConfinementFlags(ShellQuote(settings.work_dir));
  if (!settings.server_home.empty()) flags += " --sandbox-hide " + ShellQuote(settings.server_home);
  return flags;
}

StatusOr<SlurmRequest> SlurmRequest::ForType(const MachineType& type) {
  SettingsReader r(type.options, "type '" + type.name + "' options");
  SlurmRequest q;
  q.partition = r.String("partition", "");
  q.nodes = static_cast<int>(r.Number("nodes", 1));
  q.cpus = static_cast<int>(r.Number("cpus", type.cpus));
  q.mem = r.String(
      "mem", type.memory_gb > 0
                 ? std::to_string(static_cast<int64_t>(std::ceil(type.memory_gb * 1024))) + "M"
                 : "");
  q.gres = r.String("gres", type.gpus > 0 ? "gpu:" + std::to_string(type.gpus) : "");
  q.time = r.String("time", "");
  q.qos = r.String("qos", "");
  q.account = r.String("account", "");
  q.extra = r.Strings("sbatch_args");
  YARD_RETURN_IF_ERROR(r.Finish());
  if (q.nodes < 1 || q.cpus < 1)
    return InvalidArgument("type '" + type.name + "': options nodes and cpus must be >= 1");
  return q;
}

std::vector<std::string> SlurmRequest::SbatchArgs() const {
  std::vector<std::string> a = {"--nodes=" + std::to_string(nodes), "--ntasks-per-node=1",
                                "--cpus-per-task=" + std::to_string(cpus)};
  if (!partition.empty()) a.push_back("--partition=" + partition);
  if (!mem.empty()) a.push_back("--mem=" + mem);
  if (!gres.empty()) a.push_back("--gres=" + gres);
  if (!time.empty()) a.push_back("--time=" + time);
  if (!qos.empty()) a.push_back("--qos=" + qos);
  if (!account.empty()) a.push_back("--account=" + account);
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

std::map<std::string, std::vector<std::string>> ParseSqueue(const std::string& out) {
  std::map<std::string, std::vector<std::string>> rows;
  for (const std::string& line : SplitLines(out)) {
    std::vector<std::string> f = SplitOn(line, '|');
    if (f.size() < 4) continue;
    rows[f[0]] = {f[1], f[2], f[3]};
  }
  return rows;
}

// ------------------------------------------------------------ provider

SlurmProvider::SlurmProvider(SlurmSettings settings, std::unique_ptr<CommandRunner> runner,
                             const Clock* clock, bool start_poller)
    : settings_(std::move(settings)), runner_(std::move(runner)), clock_(clock) {
  if (start_poller) poller_ = std::thread([this] { PollerMain(); });
}

SlurmProvider::~SlurmProvider() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (poller_.joinable()) poller_.join();
}

std::string SlurmProvider::Tool(const std::string& name) const {
  return settings_.bin_dir.empty() ? name : settings_.bin_dir + "/" + name;
}

StatusOr<std::string> SlurmProvider::ServerUrl(const AgentLaunchInfo& agent) const {
  if (!settings_.server_url.empty()) return settings_.server_url;
  if (!agent.server_url.empty()) return agent.server_url;
  YARD_ASSIGN_OR_RETURN(std::string text, ReadFile(agent.server_url_file));
  Json j = Json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.contains("url") || !j["url"].is_string())
    return Unavailable(agent.server_url_file + " does not say the server's URL yet");
  return j["url"].get<std::string>();
}

std::string SlurmProvider::BatchScript(const AgentLaunchInfo& agent, const std::string& url,
                                       const std::string& id, const std::string& dir) const {
  std::string yard = settings_.yard_binary.empty() ? agent.yard_binary : settings_.yard_binary;
  return "#!/bin/sh\n"
         "# Trainyard instance " +
         id +
         ", written by the slurm provider. The agent's\n"
         "# token comes in the environment (YARD_AGENT_TOKEN), never in this file.\n"
         "exec " +
         ShellQuote(yard) + " agent --server " + ShellQuote(url) + " --instance " + ShellQuote(id) +
         " --dir " + ShellQuote(dir) + " " + SlurmAgentConfinementFlags(settings_) + "\n";
}

std::string SbatchExportList(const std::vector<std::string>& server_env,
                             const std::vector<std::string>& agent_env) {
  auto name_of = [](const std::string& key_value) {
    return key_value.substr(0, key_value.find('='));
  };
  auto readable = [](const std::string& name) {
    return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
    });
  };
  std::vector<std::string> names;
  for (const std::string& e : server_env)
    if (!IsSecretEnvName(e) && readable(name_of(e))) names.push_back(name_of(e));
  for (const std::string& e : agent_env)
    if (readable(name_of(e))) names.push_back(name_of(e));
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  std::string list;
  for (const std::string& n : names) list += (list.empty() ? "" : ",") + n;
  return list;
}

StatusOr<std::string> SlurmProvider::Submit(const SlurmRequest& req, const AgentLaunchInfo& agent,
                                            const std::string& id, const std::string& dir) {
  CommandSpec spec;
  spec.env = {"YARD_AGENT_TOKEN=" + agent.agent_token};
  for (const std::string& e : AgentTlsEnvironment(agent)) spec.env.push_back(e);
  spec.argv = {
      Tool("sbatch"),          "--parsable",
      "--job-name=yard-" + id, "--output=" + dir + "/agent.log",
      "--no-requeue",          "--export=" + SbatchExportList(CurrentEnvironment(), spec.env)};
  for (const auto& list : {req.SbatchArgs(), settings_.sbatch_args})
    spec.argv.insert(spec.argv.end(), list.begin(), list.end());
  spec.argv.push_back(dir + "/slurm-agent.sh");
  spec.timeout = kToolTimeout;
  YARD_ASSIGN_OR_RETURN(CommandResult r, runner_->Run(spec));
  if (!r.ok()) return Unavailable("sbatch refused it: " + r.Reason());
  std::string out = r.out.substr(0, r.out.find_first_of(";\n"));
  if (out.empty() || out.find_first_not_of("0123456789_") != std::string::npos)
    return Internal("sbatch printed no job id: '" + r.out + "'");
  return out;
}

std::set<std::string> SlurmProvider::JobSettingKeys(const MachineType&) const {
  return kSlurmJobSettingKeys;
}

int SlurmProvider::Available(const MachineType& type) {
  StatusOr<SlurmRequest> req = SlurmRequest::ForType(type);
  if (!req.ok()) return 0;
  MutexLock lock(mu_);
  int slots = 0, usable_nodes = 0;
  for (const Node& n : nodes_) {
    bool here = req->partition.empty() ? n.is_default_partition : n.partition == req->partition;
    if (!here || (n.state != "idle" && n.state != "mix")) continue;
    slots += n.idle_cpus / req->cpus;
    usable_nodes += n.idle_cpus >= req->cpus;
  }
  int total = req->nodes == 1 ? slots : usable_nodes / req->nodes;
  // Ours that Slurm has not started yet are not in sinfo's count.
  for (const auto& [id, job] : jobs_)
    if (!job.started && job.ended_because.empty() && job.partition == req->partition) --total;
  return std::max(0, total);
}

Status SlurmProvider::Launch(const MachineType& type, const AgentLaunchInfo& agent,
                             InstanceRecord* inst) {
  YARD_ASSIGN_OR_RETURN(SlurmRequest req, SlurmRequest::ForType(type));
  YARD_ASSIGN_OR_RETURN(std::string url, ServerUrl(agent));
  std::string dir = settings_.work_dir + "/" + inst->id;
  YARD_RETURN_IF_ERROR(MakeDirs(dir));
  YARD_RETURN_IF_ERROR(
      WriteFileAtomic(dir + "/slurm-agent.sh", BatchScript(agent, url, inst->id, dir), 0755));
  YARD_ASSIGN_OR_RETURN(std::string slurm_id, Submit(req, agent, inst->id, dir));
  inst->info.update({{"slurm_job_id", slurm_id},
                     {"dir", dir},
                     {"partition", req.partition},
                     {"nodes", req.nodes}});
  MutexLock lock(mu_);
  Job& job = jobs_[slurm_id];
  job.instance_id = inst->id;
  job.partition = req.partition;
  job.submitted = clock_->Monotonic();
  by_instance_[inst->id] = slurm_id;
  return Status::Ok();
}

bool SlurmProvider::Cancel(const std::string& slurm_id) {
  StatusOr<CommandResult> r = runner_->Run({{Tool("scancel"), slurm_id}, {}, "", kToolTimeout, {}});
  if (!r.ok()) return false;
  // A job Slurm no longer has, or that is ending anyway, is as good as cancelled.
  return r->ok() || r->err.find("Invalid job id") != std::string::npos ||
         r->err.find("already complet") != std::string::npos;
}

Status SlurmProvider::Terminate(const InstanceRecord& inst) {
  std::string slurm_id = inst.info.value("slurm_job_id", "");
  {
    MutexLock lock(mu_);
    auto it = by_instance_.find(inst.id);
    if (it != by_instance_.end()) {
      slurm_id = it->second;
      jobs_.erase(it->second);
      by_instance_.erase(it);
    }
  }
  if (slurm_id.empty() || Cancel(slurm_id)) return Status::Ok();
  MutexLock lock(mu_);
  to_cancel_.insert(slurm_id);
  return Unavailable("scancel " + slurm_id + " failed; retrying in the background");
}

bool SlurmProvider::IsAlive(const InstanceRecord& inst) {
  MutexLock lock(mu_);
  // An ended job stays "alive" until its interruption, which says why, is taken.
  return by_instance_.count(inst.id) > 0;
}

bool SlurmProvider::Adopt(const InstanceRecord& inst) {
  std::string slurm_id = inst.info.value("slurm_job_id", "");
  if (slurm_id.empty()) return false;
  MutexLock lock(mu_);
  Job& job = jobs_[slurm_id];
  job.instance_id = inst.id;
  job.partition = inst.info.value("partition", "");
  job.submitted = clock_->Monotonic();
  by_instance_[inst.id] = slurm_id;
  wake_.notify_all();  // the poller tells soon whether it still runs
  return true;
}

std::vector<Interruption> SlurmProvider::TakeInterruptions() {
  MutexLock lock(mu_);
  for (const Interruption& i : interrupted_) {
    auto it = by_instance_.find(i.instance_id);
    if (it == by_instance_.end()) continue;
    jobs_.erase(it->second);
    by_instance_.erase(it);
  }
  return std::exchange(interrupted_, {});
}

// ------------------------------------------------------------ polling

void SlurmProvider::PollerMain() {
  MutexLock lock(mu_);
  while (!stop_) {
    lock.Unlock();
    PollOnce();
    lock.Lock();
    wake_.wait_for(lock.unique(), std::chrono::duration<double>(settings_.poll_interval_s),
                   [this]() REQUIRES(mu_) { return stop_; });
  }
}

void SlurmProvider::PollOnce() {
  PollJobs();
  PollNodes();
  RetryCancels();
}

void SlurmProvider::PollJobs() {
  std::vector<std::string> ids;
  {
    MutexLock lock(mu_);
    for (const auto& [id, job] : jobs_)
      if (job.ended_because.empty()) ids.push_back(id);
  }
  if (ids.empty()) return;
  StatusOr<CommandResult> r =
      runner_->Run({{Tool("squeue"), "-h", "-t", "all", "-j", Join(ids, ","), "-o", "%i|%T|%N|%r"},
                    {},
                    "",
                    kToolTimeout,
                    {}});
  // squeue fails outright when it knows none of the ids; any other failure
  // (slurmctld unreachable) says nothing about our jobs: wait for the next round.
  if (!r.ok() || (!r->ok() && r->err.find("Invalid job id") == std::string::npos)) return;
  auto rows = ParseSqueue(r->ok() ? r->out : "");
  MutexLock lock(mu_);
  for (const std::string& id : ids) {
    auto it = jobs_.find(id);
    if (it == jobs_.end() || !it->second.ended_because.empty()) continue;
    auto row = rows.find(id);
    if (row == rows.end())
      Update(id, it->second, "", "", "");
    else
      Update(id, it->second, row->second[0], row->second[1], row->second[2]);
  }
}

void SlurmProvider::Update(const std::string& slurm_id, Job& job, const std::string& state,
                           const std::string& nodes, const std::string& reason) {
  if (!nodes.empty() && nodes != "(null)") job.nodes = nodes;
  job.state = state;
  if (IsRunning(state)) {
    job.started = true;
    return;
  }
  double waited = clock_->Monotonic() - job.submitted;
  std::string where = "Slurm job " + slurm_id + (job.nodes.empty() ? "" : " on " + job.nodes);
  std::string why = reason.empty() || reason == "None" ? "" : " (" + reason + ")";
  if (state.empty()) {
    if (waited > kVanishGraceS) End(slurm_id, job, where + " is gone from squeue", false);
  } else if (state == "PENDING") {
    if (job.started) {
      End(slurm_id, job, where + " went back to PENDING" + why + ": Slurm requeued it", true);
    } else if (waited > settings_.pending_timeout_s) {
      End(slurm_id, job,
          where + " was still pending after " +
              std::to_string(static_cast<int>(settings_.pending_timeout_s)) + " s" + why +
              ": withdrawn",
          true);
    }
  } else {
    bool lingers = IsRequeued(state) || state == "SUSPENDED" || state == "STOPPED";
    End(slurm_id, job, where + " " + state + why + ": " + Meaning(state), lingers);
  }
}

void SlurmProvider::End(const std::string& slurm_id, Job& job, const std::string& why,
                        bool cancel) {
  job.ended_because = why;
  interrupted_.push_back({job.instance_id, why});
  if (cancel) to_cancel_.insert(slurm_id);
}

void SlurmProvider::PollNodes() {
  StatusOr<CommandResult> r =
      runner_->Run({{Tool("sinfo"), "-h", "-N", "-o", "%N|%P|%t|%C"}, {}, "", kToolTimeout, {}});
  if (!r.ok() || !r->ok()) return;
  std::vector<Node> nodes;
  for (const std::string& line : SplitLines(r->out)) {
    std::vector<std::string> f = SplitOn(line, '|');
    if (f.size() < 4) continue;
    Node n;
    n.name = f[0];
    n.is_default_partition = !f[1].empty() && f[1].back() == '*';
    n.partition = n.is_default_partition ? f[1].substr(0, f[1].size() - 1) : f[1];
    n.state = StripNodeState(f[2]);
    std::vector<std::string> cpus = SplitOn(f[3], '/');  // allocated/idle/other/total
    n.idle_cpus = cpus.size() == 4 ? std::atoi(cpus[1].c_str()) : 0;
    nodes.push_back(n);
  }
  MutexLock lock(mu_);
  nodes_ = std::move(nodes);
}

void SlurmProvider::RetryCancels() {
  std::set<std::string> ids;
  {
    MutexLock lock(mu_);
    ids.swap(to_cancel_);
  }
  for (const std::string& id : ids) {
    if (Cancel(id)) continue;
    MutexLock lock(mu_);
    to_cancel_.insert(id);
  }
}

}  // namespace yard
