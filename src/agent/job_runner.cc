#include "agent/job_runner.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <poll.h>

#include "agent/agent_log.h"
#include "agent/artifact_watcher.h"
#include "agent/container.h"
#include "agent/environment.h"
#include "agent/metrics_tail.h"
#include "agent/multi_node.h"
#include "agent/output_splitter.h"
#include "agent/sandbox.h"
#include "common/files.h"

namespace yard {

namespace {

// How long the pump sleeps without output before it looks at metrics,
// cancel and exit again: the latency of metric records and of a cancel.
constexpr int kPumpPollMs = 25;
// The shim exits only once the tree is gone, so the pipe should be at EOF;
// if something still holds it, stop reading after this long.
constexpr auto kDrainAfterExit = std::chrono::seconds(2);
// Backpressure: while the server has not acknowledged this much of the
// job's records, the pump stops reading its output, so a job printing
// faster than the records can be delivered blocks in write() instead of
// filling the disk (nothing is dropped). The spool keeps that much in memory
// too (EventSpool::kMaxHeldBytes) to send it without reading it back.
constexpr uint64_t kMaxUnackedBytes = 32u << 20;
// The job's output pipe holds this much instead of Linux's 64 KiB: a job
// printing fast runs on while the pump is not scheduled, and each pump round
// takes up to 1 MiB (ReadAvailable's limit), so the agent makes fewer rounds
// (poll, reads, spool write, records, server rows) per byte. 1 MiB is
// /proc/sys/fs/pipe-max-size's default, the most an unprivileged agent may ask.
constexpr int kOutputPipeBytes = 1 << 20;
// What one round can bring: ReadAvailable's 1 MiB plus its last 64 KiB read,
// and a carried partial character.
constexpr size_t kRoundBufferBytes = (1 << 20) + (64 << 10) + 16;

// The pump checks the bound before a round: unacknowledged bytes reach it
// plus a round, and a block partly acknowledged is still held.
static_assert(kMaxUnackedBytes + 2 * kRoundBufferBytes + (1 << 20) <= EventSpool::kMaxHeldBytes,
              "records within the backpressure bound are sent from memory");

// Best effort: a refusal (a lower pipe-max-size, or the user's pipes over
// pipe-user-pages-soft) leaves the pipe as it was, which works, only slower.
void EnlargeOutputPipe(int fd) {
  if (::fcntl(fd, F_GETPIPE_SZ) >= kOutputPipeBytes) return;
  if (::fcntl(fd, F_SETPIPE_SZ, kOutputPipeBytes) < 0 && errno != EPERM && errno != EBUSY)
    AgentLog(std::string("could not enlarge a job's output pipe (it works, but slower): ") +
             std::strerror(errno));
}

std::vector<ArtifactWatcher::Dir> ArtifactDirs(const JobPaths& p) {
  return {{"checkpoints", p.checkpoints}, {"logs", p.logs}, {"outputs", p.outputs}};
}

// What interpreters leave in a working folder on their own: not outputs.
const std::vector<std::string> kWorkCacheFolders = {"__pycache__", ".ipynb_checkpoints"};
// A working-folder file larger than this (a data set the job downloaded) is
// not sent back at the job's end; the output folder has no such limit.
constexpr uint64_t kMaxWorkFileBytes = uint64_t{1} << 30;

// A scheduling decision the user sees with the job's events.
Json DecisionRecord(std::string message) {
  return {{"kind", "decision"}, {"message", std::move(message)}};
}

// With no time in a notice (or an unreadable one), EC2's usual two minutes.
constexpr double kDefaultNoticeS = 120;

}  // namespace

JobRunner::JobRunner(JobContext context, Assignment assignment, Status parse_status)
    : ctx_(std::move(context)), a_(std::move(assignment)), parse_status_(std::move(parse_status)) {}

JobRunner::~JobRunner() { Join(); }

void JobRunner::Start() {
  if (ctx_.preemption) ctx_.preemption->AttemptBegan();
  thread_ = std::thread([this] {
    Main();
    if (ctx_.preemption) ctx_.preemption->AttemptEnded();
    done_ = true;
    if (ctx_.on_done) ctx_.on_done();
  });
}

void JobRunner::Join() {
  if (thread_.joinable()) thread_.join();
}

void JobRunner::Cancel(const std::string& reason) {
  MutexLock lock(mu_);
  if (cancelled_) return;
  cancel_reason_ = reason;
  cancelled_ = true;
}

std::string JobRunner::cancel_reason() const {
  MutexLock lock(mu_);
  return cancel_reason_;
}

void JobRunner::Main() {
  if (!parse_status_.ok()) return FailEarly(1, "bad assignment: " + parse_status_.message());
  if (cancelled()) return Finish(1, cancel_reason() + " before it started", true);
  JobPaths paths = JobPaths::For(ctx_.config->work_dir, a_.job, a_.attempt);
  StatusOr<std::string> resume_path = PrepareJobFolder(a_, paths, *ctx_.cache);
  if (ctx_.agent_stop->stopped()) return ctx_.spool->Abandon(a_.job, a_.attempt);
  if (cancelled()) return Finish(1, cancel_reason() + " before it started", true);
  if (Preempted()) return EndPreempted("before it started");
  if (!resume_path.ok()) {
    return FailEarly(1, "could not prepare the job: " + resume_path.status().message());
  }
  RunCommand(paths, *resume_path);
}

void JobRunner::RunCommand(const JobPaths& paths, const std::string& resume_path) {
  notice_path_ = paths.notice;
  JobSpawnOptions options;
  options.argv = a_.command;
  options.env = JobEnvironment(ctx_.inherited_env, ctx_.config->job_env, a_, paths, resume_path);
  PutYardToolsOnPath(&options.env);
  CommandRunner* commands = Commands();
  std::string container_id_file;
  if (Status runtime = SetUpRuntime(paths, resume_path, commands, &options, &container_id_file);
      !runtime.ok()) {
    return FailEarly(1, runtime.message());
  }
  // A build runs to its end; a cancel that came meanwhile starts nothing.
  if (cancelled()) return Finish(1, cancel_reason() + " before it started", true);
  if (Preempted()) return EndPreempted("before it started");
  if (Status confined = Confine(paths, &options); !confined.ok())
    return FailEarly(1, confined.message());
  options.cwd = paths.work;
  options.kill_grace = ctx_.config->kill_grace;
  options.shim_executable = ctx_.config->yard_binary;
  options.zygote = ctx_.shim_zygote;
  // The working folder as the job finds it: what it then writes is offered back.
  std::unique_ptr<ArtifactWatcher> work_files = MakeWorkWatcher(paths);
  int start_failure_code = 0;
  StatusOr<std::unique_ptr<JobProcess>> process =
      StartProcess(paths, &options, &start_failure_code);
  if (!process.ok()) return FailEarly(start_failure_code, process.status().message());
  {
    MutexLock lock(metrics_mu_);  // before the watcher's thread reads it: for the analysis
    metrics_ = std::make_unique<MetricsTail>(paths.metrics);
  }
  std::unique_ptr<ArtifactWatcher> watcher = MakeWatcher(paths);
  watcher->Start(ctx_.config->artifact_scan_interval);
  ExitInfo info = Pump(process->get());
  watcher->Stop();
  std::string not_removed = RemoveContainer(commands, container_id_file);
  if (!not_removed.empty()) AgentLog("job " + a_.job + ": container not removed: " + not_removed);
  if (ctx_.agent_stop->stopped()) return ctx_.spool->Abandon(a_.job, a_.attempt);
  // Everything the job wrote is stored before the exit record says it ended.
  watcher->Scan(/*final=*/true);
  work_files->Scan(/*final=*/true);
  bool was_cancelled = cancelled();
  if (told_of_notice_ && !was_cancelled) return EndPreempted(info.Describe());
  std::string message = info.Describe();
  if (was_cancelled) message = cancel_reason() + " (" + message + ")";
  Finish(info.exit_code, message, was_cancelled);
  // The next job like this one finds a warm runner. Only now, so that the
  // import does not compete with this job's last artifact sync.
  if (ctx_.warm && !ctx_.agent_stop->stopped()) ctx_.warm->Prewarm(options);
}

void JobRunner::PutYardToolsOnPath(EnvMap* env) const {
  // Tools built beside `yard` (yard-train) are found on the job's PATH.
  if (ctx_.config->yard_binary.empty()) return;
  std::string bin_dir = std::filesystem::path(ctx_.config->yard_binary).parent_path().string();
  std::string& path = (*env)["PATH"];
  if (path.empty()) path = "/usr/local/bin:/usr/bin:/bin";  // execvp's default
  if (!bin_dir.empty()) path = bin_dir + ":" + path;
}

Status JobRunner::SetUpRuntime(const JobPaths& paths, const std::string& resume_path,
                               CommandRunner* commands, JobSpawnOptions* options,
                               std::string* container_id_file) {
  // Precedence (docs/workflow.md, "Images"): --image, then a Dockerfile
  // (container.h), then requirements.txt / environment.yml (environment.h),
  // then the instance's own Python. Either is its own step with its time.
  auto say = [this](const std::string& line) { EmitOutput("yard: " + line + "\n"); };
  if (!UsesContainer(a_, paths.work)) {
    Status environment =
        SetUpJobEnvironment(commands, ctx_.config->work_dir, paths.work, &options->env, say);
    return environment.ok() ? environment
                            : FailedPrecondition("environment: " + environment.message());
  }
  EnvMap inside = JobEnvironment({}, ctx_.config->job_env, a_, paths, resume_path);
  YARD_ASSIGN_OR_RETURN(*container_id_file, SetUpContainer(commands, ctx_.config->work_dir, a_,
                                                           paths, inside, options, say));
  return Status::Ok();
}

Status JobRunner::Confine(const JobPaths& paths, JobSpawnOptions* options) {
  // A container is confined by podman already (only the job's folder is
  // mounted). A multi-node job's prefix confines each of its ranks, on its
  // node, not srun (StartProcess).
  if (!ctx_.config->sandbox && !ctx_.config->unconfined_reason.empty()) {
    Emit(
        DecisionRecord("the job runs unconfined: it can read what the agent's user can read on "
                       "this host (" +
                       ctx_.config->unconfined_reason + ")"));
  }
  if (!ctx_.config->sandbox || UsesContainer(a_, paths.work)) return Status::Ok();
  std::string agent_dir =
      std::filesystem::absolute(ctx_.config->work_dir).lexically_normal().string();
  SandboxSpec spec;
  // All of the instance's job folders: its jobs are its one user's, and a
  // warm runner started after one job serves the next (warm_runner.h).
  spec.writable = std::filesystem::path(paths.root).parent_path().string();
  std::string bin_dir = std::filesystem::path(ctx_.config->yard_binary).parent_path().string();
  spec.readable = {bin_dir, agent_dir + "/envs"};
  // A warm runner started in this sandbox (warm_runner.h) runs from its
  // cached copy there and writes its ready file there.
  spec.also_writable = {agent_dir + "/warm"};
  if (Status made = MakeDirs(agent_dir + "/warm"); !made.ok()) return made;
  spec.hidden = ctx_.config->sandbox_hidden;
  spec.show_host = ctx_.config->sandbox_show_host;
  spec.hidden.push_back(agent_dir);
  if (!options->argv.empty()) spec.program = options->argv[0];
  StatusOr<std::vector<std::string>> prefix = ctx_.sandbox_prefixes
                                                  ? ctx_.sandbox_prefixes->Get(spec, options->env)
                                                  : SandboxPrefix(spec, options->env);
  if (!prefix.ok()) return prefix.status();
  options->sandbox = std::move(*prefix);
  if (a_.nodes == 1) UseSandboxTemplate(options);  // a template is this node's alone
  return Status::Ok();
}

void JobRunner::UseSandboxTemplate(JobSpawnOptions* options) {
  if (!ctx_.sandbox_templates || !SandboxTemplate::Usable(options->sandbox)) return;
  StatusOr<std::shared_ptr<const SandboxTemplate>> made =
      ctx_.sandbox_templates->Get(options->sandbox);
  if (!made.ok()) {
    AgentLog("job " + a_.job + ": runs in a bwrap of its own: " + made.status().ToString());
    return;
  }
  sandbox_template_ = *made;
  options->sandbox_ns_fd = sandbox_template_->mount_ns_fd();
  options->sandbox_fresh = sandbox_template_->fresh();
}

StatusOr<std::unique_ptr<JobProcess>> JobRunner::StartProcess(const JobPaths& paths,
                                                              JobSpawnOptions* options,
                                                              int* failure_exit_code) {
  if (a_.nodes > 1) {  // once per node through srun (multi_node.h), each rank confined
    StatusOr<MultiNodeLaunch> multi =
        PrepareMultiNode(a_, options->env, paths, options->sandbox, Commands());
    // srun itself is the agent's, outside: it needs the node's munge socket,
    // which a job must never reach (it would speak to Slurm as the agent's user).
    options->sandbox.clear();
    if (!multi.ok()) {
      *failure_exit_code = 1;
      return multi.status().WithContext("could not start the job on " + std::to_string(a_.nodes) +
                                        " nodes");
    }
    options->argv = std::move(multi->argv);
    options->env = std::move(multi->env);
    labeler_ = std::make_unique<RankLabeler>();
  }
  // A warm runner (warm_runner.h) becomes the job's process when it fits.
  std::string warm_note;
  std::unique_ptr<JobProcess> warm = ctx_.warm ? ctx_.warm->Take(*options, &warm_note) : nullptr;
  if (!warm_note.empty()) EmitOutput(warm_note);
  if (warm) return warm;
  StatusOr<std::unique_ptr<JobProcess>> process = JobProcess::Start(*options);
  if (!process.ok()) {
    *failure_exit_code = 127;
    return process.status().WithContext("could not start the job");
  }
  return process;
}

std::unique_ptr<ArtifactWatcher> JobRunner::MakeWatcher(const JobPaths& paths) {
  auto watcher = std::make_unique<ArtifactWatcher>(
      ArtifactDirs(paths),
      [this](const std::string& path,
             const ChunkUploader::ChunksStored& stored) -> StatusOr<FileEntry> {
        if (ctx_.agent_stop->stopped()) return Cancelled("agent stopping");
        return ctx_.uploader->Upload(path, nullptr, stored);
      },
      // Metric lines written before the file are spooled before its
      // artifact record: a server holding a checkpoint then holds the
      // metrics of the epochs it covers (a resume leaves no hole in the
      // history; the runners write an epoch's metrics before its checkpoint).
      [this](Json record) {
        EmitMetrics(/*final=*/false);
        Emit(record);
      });
  // The checkpoint we fetched to resume from is on the server already.
  if (a_.resume_from) watcher->MarkSynced("checkpoints", a_.resume_from->path);
  return watcher;
}

std::unique_ptr<ArtifactWatcher> JobRunner::MakeWorkWatcher(const JobPaths& paths) {
  auto watcher = std::make_unique<ArtifactWatcher>(
      std::vector<ArtifactWatcher::Dir>{{"work", paths.work, kWorkCacheFolders, kMaxWorkFileBytes}},
      [this](const std::string& path,
             const ChunkUploader::ChunksStored& stored) -> StatusOr<FileEntry> {
        if (ctx_.agent_stop->stopped()) return Cancelled("agent stopping");
        return ctx_.uploader->Upload(path, nullptr, stored);
      },
      [this](Json record) { Emit(record); });
  watcher->MarkAllSynced();
  return watcher;
}

void JobRunner::EmitMetrics(bool final) {
  MutexLock lock(metrics_mu_);
  for (const Json& record : metrics_->Poll(final)) Emit(record);
}

ExitInfo JobRunner::Pump(JobProcess* process) {
  OutputSplitter splitter;
  EnlargeOutputPipe(process->output_fd());
  bool terminated = false, open = true;
  // One buffer for every round: a round of up to 1 MiB appended 64 KiB at a
  // time into a fresh string was copied again at each doubling of it.
  std::string data;
  data.reserve(kRoundBufferBytes);
  std::optional<ExitInfo> exit;
  auto exit_seen = std::chrono::steady_clock::now(), next_look = exit_seen;
  while (open) {
    if (!terminated && (cancelled() || ctx_.agent_stop->stopped())) {
      process->Terminate();
      terminated = true;
    }
    if (ctx_.preemption) WatchPreemption(process, &terminated);
    // A job being ended is drained whatever the server holds: the agent
    // may be stopping with the server away.
    if (!terminated &&
        !ctx_.spool->WaitUnackedBytesAtMost(a_.job, a_.attempt, kMaxUnackedBytes,
                                            std::chrono::milliseconds(kPumpPollMs))) {
      exit_seen = std::chrono::steady_clock::now();  // the drain waits for us
      if (!exit) exit = process->TryWait();
      continue;
    }
    struct pollfd pfd = {process->output_fd(), POLLIN, 0};
    ::poll(&pfd, 1, kPumpPollMs);
    data.clear();  // the spool holds the last round's pieces: nothing views it now
    open = process->ReadAvailable(&data);
    if (labeler_) data = labeler_->Add(data, !open);
    EmitOutputs(splitter.Split(data, !open));
    auto now = std::chrono::steady_clock::now();
    // Metrics and the exit are looked at every kPumpPollMs, not every round:
    // a job printing fast makes thousands of rounds a second, each of which
    // would open the metrics file and call wait4. (A job's end is seen at
    // once anyway: its pipe closes.)
    if (now >= next_look || !open) {
      next_look = now + std::chrono::milliseconds(kPumpPollMs);
      EmitMetrics(/*final=*/false);
      if (!exit && (exit = process->TryWait())) exit_seen = now;
    }
    if (exit && now - exit_seen > kDrainAfterExit) break;
  }
  EmitOutputs(splitter.Split("", true));
  EmitMetrics(/*final=*/true);
  return exit ? *exit : process->Wait();
}

bool JobRunner::Preempted() const {
  return ctx_.preemption && ctx_.preemption->interruption().has_value();
}

void JobRunner::WatchPreemption(JobProcess* process, bool* terminated) {
  std::vector<PreemptionNotice> rebalances = ctx_.preemption->rebalances();
  for (; rebalances_shown_ < rebalances.size(); ++rebalances_shown_)
    Emit(DecisionRecord(rebalances[rebalances_shown_].Describe()));
  if (!told_of_notice_) {
    std::optional<PreemptionNotice> notice = ctx_.preemption->interruption();
    if (!notice) return;
    TellJobOfNotice(process, *notice);
  }
  if (!*terminated && std::chrono::steady_clock::now() >= preempt_deadline_) {
    Emit(DecisionRecord("the job has not exited by the interruption's deadline: stopping it"));
    process->Terminate();
    *terminated = true;
  }
}

void JobRunner::TellJobOfNotice(JobProcess* process, const PreemptionNotice& notice) {
  told_of_notice_ = true;
  const PreemptionOptions& o = ctx_.config->preemption;
  double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  double left = notice.at > 0 ? notice.at - now : kDefaultNoticeS;
  double give = std::max(0.0, left - std::chrono::duration<double>(o.margin).count());
  preempt_deadline_ = std::chrono::steady_clock::now() +
                      std::chrono::milliseconds(static_cast<int64_t>(give * 1000));
  // The file first, so that a signal handler that looks for it finds it.
  std::string problems;
  if (Status w = WriteFileAtomic(notice_path_, notice.json + "\n"); !w.ok())
    problems += "; could not write the notice file: " + w.message();
  if (Status sent = process->Signal(o.signal); !sent.ok())
    problems += "; could not signal the job: " + sent.message();
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.0f s", give);
  Emit(DecisionRecord(notice.Describe() + ": told the job (" + SignalName(o.signal) +
                      ", $YARD_PREEMPTION_NOTICE); it has " + seconds +
                      " to write a checkpoint and exit, then it is requeued" + problems));
}

void JobRunner::EndPreempted(const std::string& what) {
  Emit(DecisionRecord("the job stopped for the spot interruption (" + what +
                      "); the instance is reported preempted once everything is delivered"));
  ctx_.spool->Abandon(a_.job, a_.attempt);
}

void JobRunner::Emit(const Json& record) {
  AppendWaitingForRoom([&] { return ctx_.spool->Append(a_.job, a_.attempt, record); });
}

void JobRunner::EmitOutput(std::string_view data) {
  AppendWaitingForRoom([&] { return ctx_.spool->AppendOutput(a_.job, a_.attempt, data); });
}

void JobRunner::EmitOutputs(const std::vector<std::string_view>& pieces) {
  if (pieces.empty()) return;
  AppendWaitingForRoom([&] { return ctx_.spool->AppendOutputs(a_.job, a_.attempt, pieces); });
}

void JobRunner::AppendWaitingForRoom(const std::function<StatusOr<int64_t>()>& append) {
  bool said = false;
  for (;;) {
    StatusOr<int64_t> seq = append();
    if (seq.ok() || seq.status().code() != Code::kInsufficientStorage) return LogSpoolError(seq);
    if (!said) {
      AgentLog("job " + a_.job + ": " + seq.status().message() +
               "; waiting for room to keep its records (the job waits too)");
      said = true;
    }
    if (ctx_.agent_stop->WaitFor(std::chrono::seconds(1))) return LogSpoolError(seq);
  }
}

void JobRunner::LogSpoolError(const StatusOr<int64_t>& seq) {
  if (!seq.ok() && !spool_error_logged_.exchange(true)) {
    AgentLog("job " + a_.job + ": records lost: " + seq.status().ToString());
  }
}

void JobRunner::FailEarly(int exit_code, const std::string& message) {
  AgentLog("job " + a_.job + ": " + message);
  EmitOutput("yard: " + message + "\n");
  Finish(exit_code, message, cancelled());
}

void JobRunner::Finish(int exit_code, const std::string& message, bool cancelled) {
  // Free before the exit record exists: the sender may deliver it and the
  // server answer the long poll with the next assignment before Emit even
  // returns, and an assignment that finds this runner busy waits for the
  // next poll (a second). Nothing follows the exit record, so a Join() now
  // waits for Emit only.
  done_ = true;
  Emit(
      {{"kind", "exit"}, {"exit_code", exit_code}, {"message", message}, {"cancelled", cancelled}});
}

}  // namespace yard
