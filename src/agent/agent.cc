#include "agent/agent.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <limits>
#include <set>
#include <thread>
#include <utility>

#include "agent/agent_http.h"
#include "agent/agent_log.h"
#include "agent/chunk_cache.h"
#include "agent/event_sender.h"
#include "agent/event_spool.h"
#include "agent/job_folders.h"
#include "agent/job_runner.h"
#include "agent/retry.h"
#include "agent/shim_zygote.h"
#include "agent/stop_signal.h"
#include "client/transfer.h"
#include "common/files.h"
#include "common/hashing.h"
#include "common/process.h"
#include "common/thread_annotations.h"

namespace yard {

namespace {

constexpr int kWorkWaitS = 20;
// The read timeout of a long poll: its wait plus room for a slow reply.
constexpr int kWorkReadTimeoutS = kWorkWaitS + 10;
constexpr int kShortCallTimeoutS = 30;
// After {"terminate": true}: how long Run waits for the last records to be
// acknowledged (they stay spooled for the next agent otherwise).
constexpr auto kTerminateFlush = std::chrono::seconds(10);

bool IsPermanent(const Status& s) {
  return s.code() == Code::kUnauthenticated || s.code() == Code::kPermissionDenied ||
         s.code() == Code::kNotFound;
}

std::chrono::milliseconds HeartbeatInterval(const Json& reply) {
  double s = 1;
  if (reply.contains("heartbeat_s") && reply["heartbeat_s"].is_number()) s = reply["heartbeat_s"];
  return std::chrono::milliseconds(static_cast<int64_t>(std::clamp(s, 0.05, 300.0) * 1000));
}

struct Queued {
  Assignment assignment;
  Status parse_status;
};

// The exit record of an attempt that never started.
Json UnstartedExit(const std::string& message, bool cancelled, bool revoked) {
  Json exit = {{"kind", "exit"}, {"exit_code", 1}, {"message", message}, {"cancelled", cancelled}};
  if (revoked) exit["revoked"] = true;
  return exit;
}

}  // namespace

StatusOr<std::string> LoadOrCreateCredential(const std::string& work_dir) {
  std::string path = work_dir + "/credential";
  StatusOr<std::string> saved = ReadFile(path);
  if (saved.ok()) {
    std::string token = *saved;
    while (!token.empty() && (token.back() == '\n' || token.back() == ' ')) token.pop_back();
    if (!token.empty()) return token;
  }
  YARD_RETURN_IF_ERROR(MakeDirs(work_dir));
  std::string token = "yit_" + RandomHex(24);  // the shape the server checks
  YARD_RETURN_IF_ERROR(WriteFileAtomic(path, token + "\n", 0600));
  return token;
}

struct Agent::Impl {
  explicit Impl(AgentConfig c)
      : config(std::move(c)),
        api(RetryingResolver(config.server), config.token, config.tls),
        bootstrap_api(std::make_unique<AgentHttp>(RetryingResolver(config.server),
                                                  config.bootstrap_token, config.tls)),
        blobs(RetryingResolver(config.server), config.token),
        agent_path("/v1/agents/" + config.instance_id) {
    blobs.set_tls_trust(config.tls);
  }

  Status Open();
  Status Register();
  void StartHeartbeat();
  void Heartbeat();
  Status WorkLoop();
  Status PollOnce(Backoff* backoff, bool* terminate);
  void NoteReachable(const Status& st);
  void OnAssign(const Json& j);
  void OnCancel(const std::string& job);
  // The server takes back an assignment queued behind the running job: if
  // it has not started, its exit record says so ("revoked") and it never
  // runs here; if it has, it runs on and ends as usual.
  void OnRevoke(const std::string& job, int64_t attempt);
  void OnTerminate();
  // The starter thread: starts the first queued assignment as soon as no
  // job runs (woken by JobContext::on_done), so that an assignment queued
  // behind a job (pipelining) starts the moment that job ends.
  void StartStarter();
  void StopStarter();
  void StarterLoop();
  std::unique_ptr<JobRunner> MakeRunner(Queued q);
  // Ends queued assignments of `job_id` (of `attempt`; -1: any) without
  // running them: spools `exit` for each. Returns how many.
  int EndQueued(const std::string& job_id, int64_t attempt, const Json& exit) REQUIRES(jobs_mu);
  void Shutdown();
  // With preemption watching on: the watcher, and a thread that waits for an
  // interruption notice, then for the job to end and every record to be
  // acknowledged, reports the instance preempted and stops the agent.
  void StartPreemptionWatch();
  void ReportPreemption();
  Status PostPreempted(const PreemptionNotice& notice,
                       std::chrono::steady_clock::time_point deadline);

  AgentConfig config;
  StopSignal stop;
  AgentHttp api;
  std::unique_ptr<AgentHttp> bootstrap_api;  // only for registering
  HttpClient blobs;
  const std::string agent_path;
  std::unique_ptr<EventSpool> spool;
  std::unique_ptr<EventSender> sender;
  std::unique_ptr<ChunkCache> cache;
  std::unique_ptr<ChunkUploader> uploader;
  std::unique_ptr<WarmPool> warm;                       // warm runners for Keras fit jobs
  std::unique_ptr<SandboxTemplates> sandbox_templates;  // null: a bwrap per confined job
  // Forks the jobs' shims; declared before `job`, which must end first.
  std::unique_ptr<ShimZygote> shim_zygote;               // null: each shim spawned
  std::unique_ptr<SandboxPrefixCache> sandbox_prefixes;  // null: computed per confined job
  std::unique_ptr<PreemptionState> preemption;           // null: not watching
  std::unique_ptr<PreemptionWatcher> preemption_watcher;
  std::thread preemption_reporter;
  EnvMap inherited_env;
  std::chrono::milliseconds heartbeat_interval{1000};
  std::thread heartbeat;
  // Touched by the Run thread only.
  bool server_reachable = true;
  // The job and the assignments waiting for it to end: the Run thread adds,
  // cancels and revokes, the starter thread starts them.
  Mutex jobs_mu;
  std::condition_variable jobs_cv;
  std::unique_ptr<JobRunner> job GUARDED_BY(jobs_mu);  // may be done already
  std::deque<Queued> queued GUARDED_BY(jobs_mu);
  // Attempts started or queued. Assignments come from the poll (Run thread)
  // and with the answer to an exit record (sender thread).
  std::set<std::pair<std::string, int64_t>> seen GUARDED_BY(jobs_mu);
  // Jobs cancelled while unknown here, newest last (at most kMaxEarlyCancels):
  // an assignment that comes with an exit's answer may arrive after the
  // poll brought its cancel; it then ends unstarted.
  static constexpr size_t kMaxEarlyCancels = 64;
  std::deque<std::string> early_cancels GUARDED_BY(jobs_mu);
  bool starter_stop GUARDED_BY(jobs_mu) = false;
  std::thread starter;
  // Removes delivered attempts' folders after each start (starter thread only).
  DeliveredFolderSweeper sweeper{
      config.work_dir + "/jobs",
      [this](const std::string& job, long long attempt) { return spool->PathFor(job, attempt); }};
};

Status Agent::Impl::Open() {
  std::error_code ec;
  std::filesystem::create_directories(config.work_dir + "/jobs", ec);
  if (ec) return Internal("creating " + config.work_dir + "/jobs: " + ec.message());
  YARD_ASSIGN_OR_RETURN(spool, EventSpool::Open(config.work_dir + "/spool"));
  YARD_ASSIGN_OR_RETURN(BlobStore store, BlobStore::Open(config.work_dir + "/chunks"));
  cache = std::make_unique<ChunkCache>(std::move(store), &blobs, &stop);
  if (!config.server_blobs.empty()) {
    YARD_ASSIGN_OR_RETURN(BlobStore server_store, BlobStore::Open(config.server_blobs));
    cache->UseServerStore(std::move(server_store));
  }
  UploadOptions upload;
  upload.retry = [this](const std::function<Status()>& call) {
    return RetryUnavailable(stop, call);
  };
  uploader = std::make_unique<ChunkUploader>(&blobs, std::move(upload));
  // The answer to a job's exit record may bring the next job (no poll).
  sender = std::make_unique<EventSender>(spool.get(), &api, config.instance_id,
                                         [this](const Json& work) {
                                           if (work.contains("assign")) OnAssign(work["assign"]);
                                         });
  // Jobs get the agent's environment minus its secrets (and the bootstrap
  // credential, should it still be there).
  inherited_env = EnvMapFrom(EnvironmentWithoutSecrets());
  warm = std::make_unique<WarmPool>(config.work_dir + "/warm");
  // YARD_SANDBOX_TEMPLATES=0: a bwrap per job, as before templates (for
  // comparisons; bench/README.md).
  const char* templates = std::getenv("YARD_SANDBOX_TEMPLATES");
  if (config.sandbox && !config.yard_binary.empty() &&
      !(templates && std::string(templates) == "0"))
    sandbox_templates = std::make_unique<SandboxTemplates>(config.yard_binary);
  // YARD_SHIM_ZYGOTE=0: each job's shim is spawned, as before the zygote
  // (for comparisons; bench/README.md). Only for yard-shim beside `yard`.
  const char* zygote = std::getenv("YARD_SHIM_ZYGOTE");
  if (!config.yard_binary.empty() && ShimCommand(config.yard_binary).size() == 1 &&
      !(zygote && std::string(zygote) == "0"))
    shim_zygote = std::make_unique<ShimZygote>(config.yard_binary);
  // YARD_SANDBOX_PREFIX_CACHE=0: every confined job computes its sandbox
  // prefix anew, as before the cache (for comparisons; bench/README.md).
  const char* prefixes = std::getenv("YARD_SANDBOX_PREFIX_CACHE");
  if (config.sandbox && !(prefixes && std::string(prefixes) == "0"))
    sandbox_prefixes = std::make_unique<SandboxPrefixCache>();
  if (config.preemption.enabled) preemption = std::make_unique<PreemptionState>();
  return Status::Ok();
}

Status Agent::Impl::Register() {
  Json body = {{"instance", config.instance_id}, {"resources", config.resources}};
  // The first register (and a repeat of it) presents the bootstrap and
  // binds our credential; later calls use the credential alone.
  AgentHttp* caller = &api;
  if (!config.bootstrap_token.empty()) {
    body["credential"] = config.token;
    caller = bootstrap_api.get();
  }
  Backoff backoff;
  for (;;) {
    StatusOr<Json> reply = caller->PostJson("/v1/agents/register", body, kShortCallTimeoutS);
    if (reply.ok()) {
      heartbeat_interval = HeartbeatInterval(*reply);
      // Providers that cannot see the controller (ssh) watch for this line.
      AgentLog("registered as " + config.instance_id);
      return Status::Ok();
    }
    if (reply.status().code() == Code::kCancelled) return reply.status();
    if (!IsTransient(reply.status())) return reply.status().WithContext("registering");
    if (reply.status().code() != Code::kUnavailable) AgentLog(reply.status().ToString());
    if (stop.WaitFor(backoff.Next())) return Cancelled("agent stopping");
  }
}

void Agent::Impl::StartHeartbeat() {
  heartbeat = std::thread([this] {
    while (!stop.WaitFor(heartbeat_interval)) Heartbeat();
  });
}

void Agent::Impl::Heartbeat() {
  StatusOr<Json> reply =
      api.PostJson(agent_path + "/heartbeat", Json::object(), kShortCallTimeoutS);
  // A missed beat is retried by the next one; only say why when it is not
  // the usual server-is-restarting case.
  Code code = reply.status().code();
  if (code != Code::kOk && code != Code::kUnavailable && code != Code::kCancelled) {
    AgentLog("heartbeat: " + reply.status().ToString());
  }
}

Status Agent::Impl::WorkLoop() {
  Backoff backoff;
  while (!stop.stopped()) {
    bool terminate = false;
    Status st = PollOnce(&backoff, &terminate);
    if (!st.ok()) return st;
    if (terminate) {
      OnTerminate();
      return Status::Ok();
    }
  }
  return Cancelled("agent stopping");
}

Status Agent::Impl::PollOnce(Backoff* backoff, bool* terminate) {
  // pipeline=1: this agent starts an assignment queued behind its job on its
  // own and answers revokes, so the server may send the next job early.
  StatusOr<Json> reply = api.GetJson(
      agent_path + "/work?wait=" + std::to_string(kWorkWaitS) + "&pipeline=1", kWorkReadTimeoutS);
  const Status& st = reply.status();
  if (st.code() == Code::kCancelled) return st;
  if (IsPermanent(st)) return st.WithContext("polling for work");
  NoteReachable(st);
  if (!st.ok()) {
    stop.WaitFor(backoff->Next());
    return Status::Ok();
  }
  backoff->Reset();
  if (!reply->is_object()) return Status::Ok();
  if (reply->contains("assign")) OnAssign((*reply)["assign"]);
  if (reply->contains("cancel") && (*reply)["cancel"].is_string()) OnCancel((*reply)["cancel"]);
  if (reply->contains("revoke") && (*reply)["revoke"].is_string() &&
      reply->value("attempt", Json()).is_number_integer())
    OnRevoke((*reply)["revoke"], (*reply)["attempt"].get<int64_t>());
  *terminate = reply->contains("terminate") && (*reply)["terminate"] == true;
  return Status::Ok();
}

// One log line when the server goes away and one when it is back, rather
// than one per retry.
void Agent::Impl::NoteReachable(const Status& st) {
  if (st.ok() && !server_reachable) AgentLog("the server answers again");
  if (st.code() == Code::kUnavailable && server_reachable) {
    AgentLog("the server is unreachable, retrying: " + st.message());
  }
  if (!st.ok() && st.code() != Code::kUnavailable) AgentLog("polling for work: " + st.ToString());
  server_reachable = st.ok() || (st.code() != Code::kUnavailable && server_reachable);
}

void Agent::Impl::OnAssign(const Json& j) {
  Queued q;
  q.parse_status = Assignment::Parse(j, &q.assignment);
  const Assignment& a = q.assignment;
  if (a.job.empty() || a.attempt == 0) {
    AgentLog("ignoring an assignment: " + q.parse_status.message());
    return;
  }
  std::string job_id = a.job;  // `a` is moved into the queue below
  int64_t attempt = a.attempt;
  MutexLock lock(jobs_mu);
  // The same attempt again (a server that restarted, a retried reply).
  if (!seen.insert({job_id, attempt}).second) return;
  queued.push_back(std::move(q));
  if (std::find(early_cancels.begin(), early_cancels.end(), job_id) != early_cancels.end()) {
    EndQueued(job_id, attempt, UnstartedExit("cancelled before it started", true, false));
    return;
  }
  jobs_cv.notify_all();
}

void Agent::Impl::OnCancel(const std::string& job_id) {
  MutexLock lock(jobs_mu);
  bool running = job && job->job() == job_id && !job->Done();
  if (running) job->Cancel("cancelled");
  int ended = EndQueued(job_id, -1, UnstartedExit("cancelled before it started", true, false));
  auto seen_one = seen.lower_bound({job_id, std::numeric_limits<int64_t>::min()});
  if (running || ended > 0 || (seen_one != seen.end() && seen_one->first == job_id)) return;
  early_cancels.push_back(job_id);
  if (early_cancels.size() > kMaxEarlyCancels) early_cancels.pop_front();
}

void Agent::Impl::OnRevoke(const std::string& job_id, int64_t attempt) {
  MutexLock lock(jobs_mu);
  if (EndQueued(job_id, attempt,
                UnstartedExit("handed back unstarted: the server places it again", false, true)) ==
      0)
    AgentLog("job " + job_id + " was asked back but has started here: it runs on");
}

int Agent::Impl::EndQueued(const std::string& job_id, int64_t attempt, const Json& exit) {
  int ended = 0;
  for (auto it = queued.begin(); it != queued.end();) {
    if (it->assignment.job != job_id || (attempt >= 0 && it->assignment.attempt != attempt)) {
      ++it;
      continue;
    }
    StatusOr<int64_t> seq = spool->Append(job_id, it->assignment.attempt, exit);
    if (!seq.ok()) AgentLog("job " + job_id + ": exit record lost: " + seq.status().ToString());
    it = queued.erase(it);
    ++ended;
  }
  return ended;
}

void Agent::Impl::OnTerminate() {
  StopStarter();
  if (warm) warm->Stop();  // the instance ends: no runner for a next job
  std::unique_ptr<JobRunner> running;
  {
    MutexLock lock(jobs_mu);
    running = std::move(job);
    while (!queued.empty())
      EndQueued(queued.front().assignment.job, queued.front().assignment.attempt,
                UnstartedExit("terminated by the server before it started", true, false));
  }
  if (running) {
    running->Cancel("terminated by the server");
    running->Join();  // outside jobs_mu: its on_done takes it
  }
  for (auto end = std::chrono::steady_clock::now() + kTerminateFlush;
       std::chrono::steady_clock::now() < end && !stop.stopped();) {
    if (spool->WaitAllAcked(std::chrono::milliseconds(100))) break;
  }
}

void Agent::Impl::StartStarter() {
  starter = std::thread([this] { StarterLoop(); });
}

void Agent::Impl::StopStarter() {
  {
    MutexLock lock(jobs_mu);
    starter_stop = true;
  }
  jobs_cv.notify_all();
  if (starter.joinable()) starter.join();
}

void Agent::Impl::StarterLoop() {
  MutexLock lock(jobs_mu);
  for (;;) {
    jobs_cv.wait(lock.unique(), [this]() REQUIRES(jobs_mu) {
      return starter_stop || (!queued.empty() && (!job || job->Done()));
    });
    if (starter_stop) return;
    std::unique_ptr<JobRunner> ended = std::move(job);
    Queued next = std::move(queued.front());
    queued.pop_front();
    job = MakeRunner(std::move(next));
    JobRunner* fresh = job.get();
    lock.Unlock();
    ended.reset();  // joins: its thread may be waiting for jobs_mu in on_done
    fresh->Start();
    // Earlier attempts whose records are all delivered leave no copy behind.
    // After the start: removing a folder takes milliseconds the next job
    // should not wait for (its own folder is kept by name).
    sweeper.Sweep(fresh->job() + "-" + std::to_string(fresh->attempt()));
    lock.Lock();
  }
}

std::unique_ptr<JobRunner> Agent::Impl::MakeRunner(Queued q) {
  JobContext context;
  context.config = &config;
  context.spool = spool.get();
  context.cache = cache.get();
  context.uploader = uploader.get();
  context.agent_stop = &stop;
  context.inherited_env = inherited_env;
  context.warm = warm.get();
  context.sandbox_templates = sandbox_templates.get();
  context.sandbox_prefixes = sandbox_prefixes.get();
  context.shim_zygote = shim_zygote.get();
  context.preemption = preemption.get();
  context.commands = config.commands;
  context.on_done = [this] {
    MutexLock lock(jobs_mu);
    jobs_cv.notify_all();
  };
  return std::make_unique<JobRunner>(std::move(context), std::move(q.assignment),
                                     std::move(q.parse_status));
}

void Agent::Impl::StartPreemptionWatch() {
  const PreemptionOptions& o = config.preemption;
  std::unique_ptr<MetadataSource> source = o.source ? o.source() : MakeImdsSource(o.imds_endpoint);
  preemption_watcher = std::make_unique<PreemptionWatcher>(std::move(source), preemption.get(),
                                                           o.poll_interval, AgentLog);
  preemption_watcher->Start();
  AgentLog(
      "watching " +
      (o.imds_endpoint.empty() ? std::string("the instance metadata service") : o.imds_endpoint) +
      " for spot interruptions every " + std::to_string(o.poll_interval.count()) + " ms");
  preemption_reporter = std::thread([this] { ReportPreemption(); });
}

void Agent::Impl::ReportPreemption() {
  std::optional<PreemptionNotice> notice;
  while (!notice && !stop.stopped())
    notice = preemption->WaitInterruption(stop, std::chrono::seconds(1));
  if (!notice) return;
  // The job ends by its deadline (the runner stops it then), and everything
  // it produced is on the server before it is requeued. Only the report
  // itself gives up, a minute after the notice's time: the instance is
  // surely gone by then and the server finds it lost.
  preemption->WaitNoAttempt(stop, std::chrono::steady_clock::time_point::max());
  while (!stop.stopped() && !spool->WaitAllAcked(std::chrono::milliseconds(100))) {
  }
  double wall =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  double left = std::max(notice->at > 0 ? notice->at - wall : 120.0, 0.0) + 60;
  Status st =
      PostPreempted(*notice, std::chrono::steady_clock::now() +
                                 std::chrono::milliseconds(static_cast<int64_t>(left * 1000)));
  if (st.ok()) {
    AgentLog("reported the instance preempted; stopping");
  } else if (st.code() == Code::kCancelled) {
    AgentLog(
        "stopped while reporting the instance preempted (the server ends preempted instances)");
  } else {
    AgentLog("could not report the instance preempted (" + st.ToString() +
             "); stopping: the server notices when the heartbeats stop");
  }
  stop.Notify();
  api.CancelAll();
}

Status Agent::Impl::PostPreempted(const PreemptionNotice& notice,
                                  std::chrono::steady_clock::time_point deadline) {
  Json body = {{"action", notice.action}, {"time", notice.time}};
  Backoff backoff;
  for (;;) {
    StatusOr<Json> reply = api.PostJson(agent_path + "/preempted", body, kShortCallTimeoutS);
    if (reply.ok() || !IsTransient(reply.status())) return reply.status();
    if (std::chrono::steady_clock::now() >= deadline || stop.WaitFor(backoff.Next()))
      return reply.status();
  }
}

void Agent::Impl::Shutdown() {
  stop.Notify();  // a job still running is ended and its spool kept
  api.CancelAll();
  bootstrap_api->CancelAll();
  if (preemption_watcher) preemption_watcher->Stop();
  if (preemption_reporter.joinable()) preemption_reporter.join();
  StopStarter();
  std::unique_ptr<JobRunner> running;
  {
    MutexLock lock(jobs_mu);
    running = std::move(job);
  }
  running.reset();  // joins, outside jobs_mu (its on_done takes it)
  warm.reset();     // after the job: it may run in a process the pool spawned
  if (heartbeat.joinable()) heartbeat.join();
  if (sender) sender->Stop();
}

Agent::Agent(AgentConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}

Agent::~Agent() = default;

Status Agent::Run() {
  Status st = impl_->Open();
  if (st.ok() && impl_->preemption) impl_->StartPreemptionWatch();
  if (st.ok()) st = impl_->Register();
  if (st.ok()) {
    impl_->sender->Start();  // leftovers of an earlier agent go first
    impl_->StartHeartbeat();
    impl_->StartStarter();
    st = impl_->WorkLoop();
  }
  impl_->Shutdown();
  return st.code() == Code::kCancelled ? Status::Ok() : st;
}

void Agent::Stop() {
  impl_->stop.Notify();
  impl_->api.CancelAll();
  impl_->bootstrap_api->CancelAll();
}

}  // namespace yard
