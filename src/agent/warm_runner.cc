// Warm runners; the design is in warm_runner.h.
#include "agent/warm_runner.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "agent/agent_log.h"
#include "common/files.h"
#include "common/hashing.h"

namespace yard {

namespace fs = std::filesystem;

const char* const kLateBoundEnv[] = {"YARD_JOB_ID",
                                     "YARD_CHECKPOINT_DIR",
                                     "YARD_LOG_DIR",
                                     "YARD_OUTPUT_DIR",
                                     "YARD_METRICS",
                                     "YARD_RESUME_FROM",
                                     "TRAINYARD_EPOCH_DELAY_S",
                                     "TRAINYARD_LOGICAL_CPUS",
                                     "YARD_PREEMPTION_NOTICE",
                                     nullptr};

namespace {

constexpr const char* kRunnerModule = "trainyard.runner";
constexpr const char* kFramework = "tensorflow";
// Files that give a job an environment of its own, which a runner started
// from the instance's environment would not have.
constexpr const char* kOwnEnvironmentFiles[] = {"requirements.txt", "environment.yml",
                                                "environment.yaml", "Dockerfile", "Containerfile"};
// Idle output kept for the agent log when a warm runner dies unasked.
constexpr size_t kIdleOutputKept = 4096;
// How often the pool thread drains an idle runner's output.
constexpr auto kIdlePoll = std::chrono::seconds(1);
// How long a job waits for a warm runner being spawned.
constexpr auto kSpawnWait = std::chrono::seconds(2);
// A runner that stops reading its request this long is given up.
constexpr int kSendTimeoutS = 10;

double WallNow() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string Seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", s);
  return buf;
}

std::string Join(const std::vector<std::string>& names, size_t max) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < max; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > max) out += " and " + std::to_string(names.size() - max) + " more";
  return out;
}

// Writes all of `data` to the socket `fd`; never raises SIGPIPE.
Status SendAll(int fd, const std::string& data) {
  timeval limit{kSendTimeoutS, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  for (size_t sent = 0; sent < data.size();) {
    ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("sending the request to the warm runner");
    sent += static_cast<size_t>(n);
  }
  return Status::Ok();
}

// Copies cwd/trainyard/{__init__,runner}.py into `dir`/trainyard/ unless
// there already. The copy outlives the job's folder.
Status CacheRunner(const std::string& cwd, const std::string& dir) {
  if (fs::exists(dir + "/trainyard/runner.py")) return Status::Ok();
  YARD_RETURN_IF_ERROR(MakeDirs(dir + "/trainyard"));
  for (const char* name : {"__init__.py", "runner.py"}) {
    StatusOr<std::string> text = ReadFile(cwd + "/trainyard/" + name);
    std::string body = text.ok() ? *text : "";
    if (!text.ok() && std::string(name) == "runner.py") return text.status();
    YARD_RETURN_IF_ERROR(WriteFileAtomic(dir + "/trainyard/" + name, body));
  }
  return Status::Ok();
}

}  // namespace

bool IsRunnerCommand(const std::vector<std::string>& argv) {
  if (argv.size() != 4) return false;
  std::string python = fs::path(argv[0]).filename().string();
  return (python == "python3" || python == "python") && argv[1] == "-m" &&
         argv[2] == kRunnerModule && argv[3] != "--warm";
}

std::string WarmIneligibility(const JobSpawnOptions& options) {
  if (!IsRunnerCommand(options.argv)) return "the job does not run python3 -m trainyard.runner";
  if (options.cwd.empty() || !fs::is_regular_file(options.cwd + "/trainyard/runner.py")) {
    return "the job's folder has no trainyard/runner.py";
  }
  for (const char* name : kOwnEnvironmentFiles) {
    if (fs::exists(options.cwd + "/" + name)) {
      return std::string("the job brings its own environment (") + name + ")";
    }
  }
  return "";
}

EnvMap WithoutLateBound(const EnvMap& env) {
  EnvMap out = env;
  for (const char* const* name = kLateBoundEnv; *name; ++name) out.erase(*name);
  return out;
}

std::string RunnerHash(const std::string& cwd) {
  StatusOr<std::string> text = ReadFile(cwd + "/trainyard/runner.py");
  return text.ok() ? Sha256Hex(*text) : "";
}

std::vector<std::string> EnvDifferences(const EnvMap& a, const EnvMap& b) {
  std::vector<std::string> names;
  for (const auto& [k, v] : a) {
    auto it = b.find(k);
    if (it == b.end() || it->second != v) names.push_back(k);
  }
  for (const auto& [k, v] : b) {
    if (!a.count(k)) names.push_back(k);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// ---- WarmRunner -------------------------------------------------------------

StatusOr<std::unique_ptr<WarmRunner>> WarmRunner::Start(const WarmSpec& spec,
                                                        const std::string& ready_file) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return ErrnoStatus("socketpair for the warm runner's request");
  }
  JobSpawnOptions options;
  options.argv = {spec.python, "-m", kRunnerModule, "--warm", ready_file};
  options.env = spec.env;
  options.cwd = spec.runner_dir;
  options.kill_grace = spec.kill_grace;
  options.shim_executable = spec.shim_executable;
  options.sandbox = spec.sandbox;
  options.stdin_fd = sv[1];
  StatusOr<std::unique_ptr<JobProcess>> process = JobProcess::Start(options);
  close(sv[1]);
  if (!process.ok()) {
    close(sv[0]);
    return process.status();
  }
  std::unique_ptr<WarmRunner> runner(new WarmRunner());
  runner->spec_ = spec;
  runner->ready_file_ = ready_file;
  runner->started_ = std::chrono::steady_clock::now();
  runner->process_ = std::move(*process);
  runner->request_fd_ = sv[0];
  return runner;
}

WarmRunner::~WarmRunner() {
  // EOF on its stdin ends an idle runner by itself; SIGTERM one still importing.
  if (request_fd_ >= 0) close(request_fd_);
  if (process_) {
    process_->Terminate();
    std::string ignored;
    while (process_->ReadAvailable(&ignored) && !process_->TryWait()) {
      ignored.clear();
      usleep(10000);
    }
    process_->Wait();
  }
  std::error_code ec;
  fs::remove(ready_file_, ec);
}

std::string WarmRunner::Mismatch(const JobSpawnOptions& options) const {
  if (options.argv[0] != spec_.python) {
    return "python is '" + options.argv[0] + "', not '" + spec_.python + "'";
  }
  if (RunnerHash(options.cwd) != spec_.runner_hash) {
    return "another runner version (trainyard/runner.py differs)";
  }
  std::vector<std::string> diff = EnvDifferences(WithoutLateBound(options.env), spec_.env);
  if (!diff.empty()) return "the environment differs in " + Join(diff, 5);
  return "";
}

bool WarmRunner::Poll() {
  process_->ReadAvailable(&idle_output_);
  if (idle_output_.size() > kIdleOutputKept) {
    idle_output_.erase(0, idle_output_.size() - kIdleOutputKept);
  }
  return !process_->TryWait();
}

std::string WarmRunner::ExitDescription() {
  std::optional<ExitInfo> info = process_->TryWait();
  return info ? info->Describe() : "still running";
}

std::string WarmRunner::Describe() const {
  StatusOr<std::string> text = ReadFile(ready_file_);
  Json ready = text.ok() ? Json::parse(*text, nullptr, false) : Json();
  if (ready.is_object() && ready.contains("ready_at") && ready["ready_at"].is_number()) {
    double ago = std::max(0.0, WallNow() - ready["ready_at"].get<double>());
    return std::string(kFramework) + " imported " + Seconds(ago) + " ago";
  }
  double since = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  return std::string(kFramework) + " still importing, started " + Seconds(since) + " ago";
}

StatusOr<std::unique_ptr<JobProcess>> WarmRunner::Hand(const JobSpawnOptions& options) {
  if (!Poll()) return Unavailable("it ended while idle (" + ExitDescription() + ")");
  if (!idle_output_.empty()) AgentLog("warm runner, while idle: " + idle_output_);
  Json request = {{"argv", options.argv}, {"cwd", options.cwd}, {"env", options.env}};
  Status sent = SendAll(request_fd_, request.dump() + "\n");
  close(request_fd_);
  request_fd_ = -1;
  if (!sent.ok()) return sent;
  return std::move(process_);
}

// ---- WarmPool ---------------------------------------------------------------

WarmPool::WarmPool(std::string dir) : dir_(std::move(dir)) {
  thread_ = std::thread([this] { Loop(); });
}

WarmPool::~WarmPool() {
  Stop();
  if (thread_.joinable()) thread_.join();
}

void WarmPool::Prewarm(const JobSpawnOptions& options) {
  if (!WarmIneligibility(options).empty()) return;
  WarmSpec spec;
  spec.python = options.argv[0];
  spec.env = WithoutLateBound(options.env);
  spec.runner_hash = RunnerHash(options.cwd);
  spec.kill_grace = options.kill_grace;
  spec.shim_executable = options.shim_executable;
  spec.sandbox = options.sandbox;
  spec.runner_dir = dir_ + "/runner-" + spec.runner_hash.substr(0, 16);
  Status cached = CacheRunner(options.cwd, spec.runner_dir);
  if (!cached.ok()) return AgentLog("no warm runner: " + cached.ToString());
  MutexLock lock(mu_);
  if (stopping_) return;
  pending_ = std::move(spec);
  cv_.notify_all();
}

std::unique_ptr<JobProcess> WarmPool::Take(const JobSpawnOptions& options, std::string* note) {
  std::unique_ptr<WarmRunner> warm;
  {
    MutexLock lock(mu_);
    // Another kind of job leaves the warm runner for the next fit job.
    if (!IsRunnerCommand(options.argv)) return nullptr;
    // A job right behind the last one waits for the spawn (milliseconds):
    // a runner half-way through its import still saves the rest.
    cv_.wait_for(lock.unique(), kSpawnWait,
                 [this]() REQUIRES(mu_) { return !pending_ && !starting_; });
    if (!warm_) return nullptr;
    warm = std::move(warm_);
  }
  std::string why = WarmIneligibility(options);
  if (why.empty()) why = warm->Mismatch(options);
  if (!why.empty()) {
    *note = "yard: cold start: the warm runner does not fit this job: " + why + "\n";
    return nullptr;  // `warm` ends here; a new one follows this job
  }
  std::string description = warm->Describe();
  StatusOr<std::unique_ptr<JobProcess>> process = warm->Hand(options);
  if (!process.ok()) {
    *note =
        "yard: cold start: the warm runner could not take the job: " + process.status().message() +
        "\n";
    return nullptr;
  }
  *note = "yard: warm runner (" + description + ")\n";
  return std::move(*process);
}

void WarmPool::Stop() {
  std::unique_ptr<WarmRunner> warm;
  {
    MutexLock lock(mu_);
    stopping_ = true;
    pending_.reset();
    warm = std::move(warm_);
    cv_.notify_all();
  }
}

bool WarmPool::WaitIdle(std::chrono::milliseconds timeout) {
  MutexLock lock(mu_);
  return cv_.wait_for(lock.unique(), timeout,
                      [this]() REQUIRES(mu_) { return !pending_ && !starting_; });
}

pid_t WarmPool::warm_pid() {
  MutexLock lock(mu_);
  return warm_ ? warm_->pid() : -1;
}

void WarmPool::Loop() {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  // Ready files of runners of an agent that was killed.
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    if (entry.path().filename().string().rfind("ready-", 0) == 0) fs::remove(entry.path(), ec);
  }
  MutexLock lock(mu_);
  while (!stopping_) {
    if (pending_) {
      StartPending();
      continue;
    }
    cv_.wait_for(lock.unique(), kIdlePoll);
    PollIdle();
  }
}

// Replaces the warm runner with one for the pending spec. Spawning happens
// on this thread (see the class comment); a runner being ended is waited
// for outside the lock.
void WarmPool::StartPending() {
  WarmSpec spec = std::move(*pending_);
  pending_.reset();
  starting_ = true;
  std::unique_ptr<WarmRunner> old = std::move(warm_);
  std::string ready = dir_ + "/ready-" + std::to_string(getpid()) + "-" +
                      std::to_string(++started_count_) + ".json";
  mu_.unlock();
  old.reset();
  StatusOr<std::unique_ptr<WarmRunner>> runner = WarmRunner::Start(spec, ready);
  if (!runner.ok()) AgentLog("could not start a warm runner: " + runner.status().ToString());
  mu_.lock();
  starting_ = false;
  cv_.notify_all();
  if (!runner.ok()) return;
  if (!stopping_) {
    warm_ = std::move(*runner);
    return;
  }
  // Stop() came while we spawned: the runner ends at once, outside the lock.
  mu_.unlock();
  runner->reset();
  mu_.lock();
}

// A warm runner that died while idle (no TensorFlow, a broken runner) is
// dropped with its output in the agent log; the next fit job starts cold
// and the one after it tries again.
void WarmPool::PollIdle() {
  if (!warm_ || warm_->Poll()) return;
  std::unique_ptr<WarmRunner> dead = std::move(warm_);
  mu_.unlock();
  AgentLog("the warm runner ended while idle (" + dead->ExitDescription() + ")" +
           (dead->idle_output().empty() ? "" : ": " + dead->idle_output()));
  dead.reset();
  mu_.lock();
}

}  // namespace yard
