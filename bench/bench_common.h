// Helpers shared by the benchmarks in bench/: a throw-away YARD_HOME with its
// own embedded server (killed, agents and jobs included, when it goes away),
// job submission through the C++ client, plain-process references spawned
// with posix_spawn, and the statistics the benchmarks print.
//
// Benchmarks report numbers; they assert nothing. A failed set-up step ends
// the program with a message (exit 1), since no figure would mean anything.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "client/connection.h"
#include "client/follow.h"
#include "client/http_client.h"
#include "client/transfer.h"
#include "common/files.h"
#include "common/process.h"

extern char** environ;

namespace yard::bench {

using SteadyClock = std::chrono::steady_clock;

// Seconds on a monotonic clock (for intervals measured by one process).
inline double MonoNow() {
  return std::chrono::duration<double>(SteadyClock::now().time_since_epoch()).count();
}

// Seconds since the epoch: comparable with the server's event "time" fields
// (same host, same clock).
inline double WallNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Kills the servers of every live BenchHome (defined below).
inline void CleanUpHomes();

[[noreturn]] inline void Die(const std::string& what) {
  std::fflush(stdout);
  std::fprintf(stderr, "bench: %s\n", what.c_str());
  CleanUpHomes();
  std::_Exit(1);
}

template <typename T>
T Must(StatusOr<T> v, const std::string& what) {
  if (!v.ok()) Die(what + ": " + v.status().ToString());
  return std::move(*v);
}

inline void Must(const Status& s, const std::string& what) {
  if (!s.ok()) Die(what + ": " + s.ToString());
}

// ---- statistics ---------------------------------------------------------------

// The q-quantile (0..1) by linear interpolation. REQUIRES: !v.empty().
inline double Quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  double pos = q * static_cast<double>(v.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(pos));
  size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

inline double Median(const std::vector<double>& v) { return Quantile(v, 0.5); }
inline double P90(const std::vector<double>& v) { return Quantile(v, 0.9); }

// "MEETS"/"MISSES" a target, for the RESULT lines run.sh collects.
inline const char* Verdict(bool met) { return met ? "MEETS" : "MISSES"; }

// ---- processes ----------------------------------------------------------------

// A child started with posix_spawnp, its stdout (and stderr) on a pipe.
struct PipedChild {
  pid_t pid = -1;
  int out_fd = -1;  // read end
};

inline PipedChild SpawnPiped(const std::vector<std::string>& argv) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) Die("pipe2 failed");
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
  PipedChild c;
  int rc = posix_spawnp(&c.pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) Die("posix_spawnp " + argv[0] + ": " + std::strerror(rc));
  c.out_fd = fds[0];
  return c;
}

inline int WaitChild(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// Wall seconds of `cp from to` (the reference of the transfer benchmarks).
inline double CopySeconds(const std::string& from, const std::string& to) {
  double t0 = MonoNow();
  PipedChild c = SpawnPiped({"cp", from, to});
  close(c.out_fd);
  int status = WaitChild(c.pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) Die("cp failed");
  return MonoNow() - t0;
}

// Runs `argv` to the end with stdout/stderr on a pipe that is read and
// discarded; returns the bytes read.
inline uint64_t RunDrained(const std::vector<std::string>& argv) {
  PipedChild c = SpawnPiped(argv);
  static thread_local std::vector<char> buf(1 << 20);
  uint64_t total = 0;
  for (;;) {
    ssize_t n = read(c.out_fd, buf.data(), buf.size());
    if (n > 0)
      total += static_cast<uint64_t>(n);
    else if (n < 0 && errno == EINTR)
      continue;
    else
      break;
  }
  close(c.out_fd);
  WaitChild(c.pid);
  return total;
}

// ---- a throw-away YARD_HOME -------------------------------------------------------

// Command line of `pid` with NULs turned into spaces ("" if gone).
inline std::string CmdlineOf(pid_t pid) {
  StatusOr<std::string> s = ReadFile("/proc/" + std::to_string(pid) + "/cmdline");
  if (!s.ok()) return "";
  std::replace(s->begin(), s->end(), '\0', ' ');
  return *s;
}

inline std::string CwdOf(pid_t pid) {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/cwd", ec);
  return ec ? "" : p.string();
}

// Pids (not ours) whose command line names `home` or whose working folder
// is inside it: the server, its agents, their shims and jobs.
inline std::vector<pid_t> ProcessesOf(const std::string& home) {
  std::vector<pid_t> out;
  DIR* dir = opendir("/proc");
  if (!dir) return out;
  while (dirent* e = readdir(dir)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0' || pid == getpid()) continue;
    std::string cwd = CwdOf(static_cast<pid_t>(pid));
    if (CmdlineOf(static_cast<pid_t>(pid)).find(home) != std::string::npos ||
        cwd.rfind(home + "/", 0) == 0)
      out.push_back(static_cast<pid_t>(pid));
  }
  closedir(dir);
  return out;
}

// The `yard` the benchmark runs: YARD_BENCH_YARD if set (e.g. a copy of an
// earlier build, with its yard-shim beside it, to compare builds with the
// same benchmark program), else this build's.
inline const char* YardBinary() {
  const char* env = std::getenv("YARD_BENCH_YARD");
  return env && *env ? env : YARD_BINARY;
}

// True if `yard server --help` mentions `flag` (flags come and go as the
// server grows; a benchmark uses one only where it exists).
inline bool ServerHasFlag(const std::string& flag) {
  PipedChild c = SpawnPiped({YardBinary(), "server", "--help"});
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = read(c.out_fd, buf, sizeof buf)) > 0;) text.append(buf, n);
  close(c.out_fd);
  WaitChild(c.pid);
  return text.find(flag) != std::string::npos;
}

class BenchHome;

// Live homes, so that Die() and a SIGINT/SIGTERM (e.g. from timeout(1)) can
// still kill their servers and agents.
struct HomeRegistry {
  std::mutex mu;
  std::vector<BenchHome*> homes;  // GUARDED_BY(mu)
  static HomeRegistry& Get() {
    static HomeRegistry r;
    return r;
  }
};

// A fresh YARD_HOME under $TMPDIR (or /tmp) with its embedded server started
// from YardBinary() (through Connect, as the CLI does; with `server_flags`
// the server is started first with them, then Connect finds it). The
// destructor kills the server and every process of the home (SIGTERM, then
// SIGKILL) and removes the folder unless YARD_BENCH_KEEP is set.
// REQUIRES: constructed on the main thread before other threads start (it
// routes SIGINT/SIGTERM to a clean-up thread).
class BenchHome {
 public:
  explicit BenchHome(const std::vector<std::string>& server_flags = {}) {
    CatchSignals();
    std::string tmpl = EnvOr("TMPDIR", "/tmp") + "/yard-bench-XXXXXX";
    if (!mkdtemp(tmpl.data())) Die("mkdtemp failed");
    home_ = tmpl;
    {
      std::lock_guard<std::mutex> lock(HomeRegistry::Get().mu);
      HomeRegistry::Get().homes.push_back(this);
    }
    unsetenv("YARD_SERVER");  // always the embedded server of this home
    unsetenv("YARD_TOKEN");
    if (!server_flags.empty()) StartServer(server_flags);
    ConnectionOptions o;
    o.home = home_;
    o.yard_binary = YardBinary();
    client_ = Must(Connect(o), "starting the embedded server in " + home_);
  }
  ~BenchHome() {
    {
      std::lock_guard<std::mutex> lock(HomeRegistry::Get().mu);
      auto& v = HomeRegistry::Get().homes;
      v.erase(std::remove(v.begin(), v.end(), this), v.end());
    }
    client_.reset();
    KillAll();
  }

  // Kills the server and everything else of the home, then removes it.
  void KillAll() {
    if (pid_t server = ServerPid();
        server > 0 && CmdlineOf(server).find(home_) != std::string::npos)
      kill(server, SIGTERM);
    for (pid_t p : ProcessesOf(home_)) kill(p, SIGTERM);
    for (int i = 0; i < 40 && !ProcessesOf(home_).empty(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (pid_t p : ProcessesOf(home_)) kill(p, SIGKILL);
    if (std::getenv("YARD_BENCH_KEEP")) {
      std::fprintf(stderr, "bench: kept %s\n", home_.c_str());
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(home_, ec);
  }
  BenchHome(const BenchHome&) = delete;
  BenchHome& operator=(const BenchHome&) = delete;

  const std::string& path() const { return home_; }
  const HttpClient& client() const { return *client_; }

  // The server's pid from <home>/server.json (0 if unknown).
  pid_t ServerPid() const {
    StatusOr<std::string> text = ReadFile(home_ + "/server.json");
    if (!text.ok()) return 0;
    Json j = Json::parse(*text, nullptr, false);
    return j.is_discarded() ? 0 : j.value("pid", 0);
  }

  // Pids of this home's agents ("yard agent ... --dir <home>/...").
  std::vector<pid_t> AgentPids() const {
    std::vector<pid_t> out;
    for (pid_t p : ProcessesOf(home_))
      if (CmdlineOf(p).find(" agent ") != std::string::npos) out.push_back(p);
    return out;
  }

 private:
  // Starts `yard server --home <home> <flags>` detached, as
  // EnsureEmbeddedServer would, and waits until it answers.
  void StartServer(const std::vector<std::string>& flags) {
    std::vector<std::string> argv = {YardBinary(), "server", "--home", home_};
    argv.insert(argv.end(), flags.begin(), flags.end());
    Must(SpawnDetached(argv, CurrentEnvironment(), home_ + "/server.log"), "starting the server");
    for (int i = 0; i < 1000; ++i) {
      StatusOr<std::string> url = ReadServerUrl(home_);
      if (url.ok() && ServerHealthy(*url, ReadServerTrust(home_))) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    Die("the server did not start; see " + home_ + "/server.log");
  }

  static void CatchSignals() {
    static std::once_flag once;
    std::call_once(once, [] {
      // A closed stdout (run.sh's tee gone) must not kill us before clean-up.
      signal(SIGPIPE, SIG_IGN);
      sigset_t set;
      sigemptyset(&set);
      for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, sig);
      pthread_sigmask(SIG_BLOCK, &set, nullptr);
      std::thread([set] {
        int sig = 0;
        sigwait(&set, &sig);
        std::fprintf(stderr, "bench: signal %d: cleaning up\n", sig);
        CleanUpHomes();
        std::_Exit(128 + sig);
      }).detach();
    });
  }

  std::string home_;
  std::unique_ptr<HttpClient> client_;
};

inline void CleanUpHomes() {
  std::lock_guard<std::mutex> lock(HomeRegistry::Get().mu);
  for (BenchHome* h : HomeRegistry::Get().homes) h->KillAll();
  HomeRegistry::Get().homes.clear();
}

// ---- CPU accounting ----------------------------------------------------------------

// CPU seconds (user + system, with reaped children) of `pid` so far.
inline double CpuSeconds(pid_t pid) {
  StatusOr<std::string> stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!stat.ok()) return 0;
  size_t paren = stat->rfind(')');
  if (paren == std::string::npos) return 0;
  // Fields after the name: state(3) ... utime(14) stime(15) cutime(16) cstime(17).
  std::vector<std::string> f;
  size_t at = paren + 2;
  while (at < stat->size() && f.size() < 15) {
    size_t sp = stat->find(' ', at);
    f.push_back(stat->substr(at, sp - at));
    at = sp + 1;
  }
  if (f.size() < 15) return 0;
  double ticks = 0;
  for (int i = 11; i <= 14; ++i) ticks += std::atof(f[i].c_str());
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// CPU seconds of `pid` and of its children still running (each with its own
// reaped children): an agent's shim zygote lives as long as the agent, so
// its forks would otherwise never be counted (agent/shim_zygote.h).
inline double CpuSecondsWithLiveChildren(pid_t pid) {
  double total = CpuSeconds(pid);
  std::error_code ec;
  std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& task : std::filesystem::directory_iterator(tasks, ec)) {
    StatusOr<std::string> children = ReadFile(task.path().string() + "/children");
    if (!children.ok()) continue;
    std::istringstream in(*children);
    for (pid_t child; in >> child;) total += CpuSeconds(child);
  }
  return total;
}

// CPU seconds of the home's server, of its agents (their shims and jobs
// included once reaped, their zygotes while they run) and of this process.
struct CpuSample {
  double server = 0, agents = 0, bench = 0;
  CpuSample operator-(const CpuSample& o) const {
    return {server - o.server, agents - o.agents, bench - o.bench};
  }
};

inline CpuSample SampleCpu(const BenchHome& home) {
  CpuSample c;
  c.server = CpuSeconds(home.ServerPid());
  for (pid_t p : home.AgentPids()) c.agents += CpuSecondsWithLiveChildren(p);
  c.bench = CpuSeconds(getpid());
  return c;
}

// "server 1.20 s, agents 0.80 s, client 0.10 s of CPU: 1.05 cores busy".
inline std::string DescribeCpu(const CpuSample& d, double wall_s) {
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "CPU: server %.2f s, agents (with jobs) %.2f s, this client %.2f s; %.2f of %u "
                "cores busy",
                d.server, d.agents, d.bench, (d.server + d.agents + d.bench) / wall_s,
                std::thread::hardware_concurrency());
  return buf;
}

// ---- jobs ---------------------------------------------------------------------

inline bool IsFinalState(const std::string& s) {
  return s == "succeeded" || s == "failed" || s == "cancelled";
}

// Uploads a one-file folder (created under `home`) and returns its manifest
// as the "bundle" of a job spec.
inline Json UploadTinyBundle(const BenchHome& home) {
  std::string dir = home.path() + "/bundle";
  Must(MakeDirs(dir), "creating " + dir);
  Must(WriteFileAtomic(dir + "/hello.txt", "hello from the bench\n"), "writing the bundle");
  TransferStats stats;
  Manifest m = Must(UploadDirectory(home.client(), dir, &stats), "uploading the bundle");
  return m.ToJson();
}

// POST /v1/jobs on machines ["local-1cpu"]; returns the job id.
inline std::string SubmitJob(const HttpClient& client, const Json& bundle,
                             const std::vector<std::string>& command, double cool_down_s,
                             const std::string& description = "bench") {
  Json spec = {{"command", command},         {"bundle", bundle},
               {"machines", {"local-1cpu"}}, {"description", description},
               {"cool_down_s", cool_down_s}, {"env", Json::object()}};
  Json reply = Must(client.Post("/v1/jobs", spec), "POST /v1/jobs");
  return reply["job"]["id"].get<std::string>();
}

// Follows the job to its final state; calls `on_event` for each event
// (may be empty). Returns the final state.
inline std::string FollowToEnd(const HttpClient& client, const std::string& id,
                               const std::function<void(const Json&)>& on_event = nullptr) {
  std::string final_state;
  FollowOptions opts;
  Must(FollowEvents(client, id, opts,
                    [&](const Json& ev) {
                      if (on_event) on_event(ev);
                      if (ev.value("kind", "") == "state" && IsFinalState(ev.value("state", "")))
                        final_state = ev.value("state", "");
                      return true;
                    }),
       "following " + id);
  return final_state;
}

// Runs one job to its end and checks it succeeded (a warm-up, typically).
inline Json RunJobToEnd(const HttpClient& client, const Json& bundle,
                        const std::vector<std::string>& command, double cool_down_s) {
  std::string id = SubmitJob(client, bundle, command, cool_down_s, "bench warm-up");
  std::string state = FollowToEnd(client, id);
  if (state != "succeeded") Die("warm-up job " + id + " ended " + state);
  return Must(client.Get("/v1/jobs/" + id), "GET job")["job"];
}

// Prints the machine the figures come from (for bench/README.md), and
// makes stdout line-buffered so that run.sh shows progress as it happens.
inline void PrintMachine() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::string model = "unknown";
  if (StatusOr<std::string> info = ReadFile("/proc/cpuinfo"); info.ok()) {
    size_t at = info->find("model name");
    if (at != std::string::npos) {
      size_t colon = info->find(':', at), nl = info->find('\n', at);
      model = info->substr(colon + 2, nl - colon - 2);
    }
  }
  std::printf("machine: %u cores (nproc), %s\n", std::thread::hardware_concurrency(),
              model.c_str());
}

}  // namespace yard::bench
