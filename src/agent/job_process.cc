#include "agent/job_process.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <set>
#include <unordered_map>

namespace yard {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Longest the shim waits between two looks at the process tree.
constexpr milliseconds kTick{20};
// After SIGKILL, how long the shim waits for the tree to vanish; only a
// process stuck in uninterruptible sleep takes longer.
constexpr milliseconds kKillWait{5000};
constexpr size_t kMaxReadPerCall = 1 << 20;
// Exit code of the shim when it fails itself (as env(1) and timeout(1) do).
constexpr int kShimFailure = 125;

ExitInfo FromWaitStatus(int status) {
  if (WIFSIGNALED(status)) return {128 + WTERMSIG(status), WTERMSIG(status)};
  return {WEXITSTATUS(status), 0};
}

// ---- /proc ----------------------------------------------------------------

struct ProcEntry {
  pid_t pid = 0;
  pid_t ppid = 0;
  pid_t pgid = 0;
};

// Parses /proc/<pid>/stat. The command name (field 2) may hold spaces and
// parentheses, so the fields are read after the last ')'.
std::optional<ProcEntry> ReadProcStat(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;  // it exited while we walked
  char buf[512];  // the name is at most 16 bytes: the fields we need fit
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return std::nullopt;
  buf[n] = '\0';
  const char* end_of_name = std::strrchr(buf, ')');
  char state;
  int ppid, pgid;
  if (!end_of_name || std::sscanf(end_of_name + 1, " %c %d %d", &state, &ppid, &pgid) != 3) {
    return std::nullopt;
  }
  return ProcEntry{pid, ppid, pgid};
}

// A whole string of decimal digits, or nullopt.
std::optional<long long> ParseCount(const char* s) {
  const char* end = s + std::strlen(s);
  long long value = -1;
  auto [ptr, ec] = std::from_chars(s, end, value);
  if (ec != std::errc() || ptr != end || value < 0) return std::nullopt;
  return value;
}

std::optional<pid_t> ParsePid(const char* s) {
  std::optional<long long> value = ParseCount(s);
  if (!value || *value <= 0 || *value > INT32_MAX) return std::nullopt;
  return static_cast<pid_t>(*value);
}

// Children of every process, keyed by parent pid.
std::unordered_map<pid_t, std::vector<ProcEntry>> ReadProcessTable() {
  std::unordered_map<pid_t, std::vector<ProcEntry>> children;
  DIR* dir = opendir("/proc");
  if (!dir) return children;
  while (dirent* entry = readdir(dir)) {
    std::optional<pid_t> pid = ParsePid(entry->d_name);
    if (!pid) continue;
    if (std::optional<ProcEntry> proc = ReadProcStat(*pid)) children[proc->ppid].push_back(*proc);
  }
  closedir(dir);
  return children;
}

// Descendants of `root`, breadth first.
std::vector<ProcEntry> DescendantEntries(pid_t root) {
  auto children = ReadProcessTable();
  std::vector<ProcEntry> out;
  std::deque<pid_t> queue{root};
  while (!queue.empty()) {
    auto it = children.find(queue.front());
    queue.pop_front();
    if (it == children.end()) continue;
    for (const ProcEntry& child : it->second) {
      out.push_back(child);
      queue.push_back(child.pid);
    }
  }
  return out;
}

// ---- signalling a tree ------------------------------------------------------

// Sends `sig` to `p` and to its process group. Never to our own group: the
// shim shares it with the agent, and a job could join it with setpgid().
void SignalProcessAndGroup(const ProcEntry& p, int sig) {
  kill(p.pid, sig);
  if (p.pgid > 1 && p.pgid != getpgrp()) kill(-p.pgid, sig);
}

// SIGTERM (then SIGCONT, so a stopped process can act on it) to every
// process of `procs` not yet in `termed`.
void TerminateNew(const std::vector<ProcEntry>& procs, std::set<pid_t>* termed) {
  for (const ProcEntry& p : procs) {
    if (!termed->insert(p.pid).second) continue;
    SignalProcessAndGroup(p, SIGTERM);
    SignalProcessAndGroup(p, SIGCONT);
  }
}

// SIGKILLs the descendants of `root` until a walk finds nobody new: a child
// forked while we walked is caught by the next walk, and a parent with
// SIGKILL pending cannot complete a fork, so this ends.
void KillDescendants(pid_t root) {
  std::set<pid_t> killed;
  for (int round = 0; round < 100; ++round) {
    std::vector<ProcEntry> procs = DescendantEntries(root);
    bool fresh = false;
    for (const ProcEntry& p : procs) fresh |= killed.insert(p.pid).second;
    for (const ProcEntry& p : procs) SignalProcessAndGroup(p, SIGKILL);
    if (!fresh) return;
  }
}

// ---- the shim ---------------------------------------------------------------

struct ShimArgs {
  milliseconds grace{5000};
  pid_t parent_pid = 0;
  std::vector<char*> argv;  // null-terminated
};

bool ParseShimArgs(int argc, char** argv, ShimArgs* out) {
  int i = 1;
  for (; i + 1 < argc && std::strcmp(argv[i], "--") != 0; i += 2) {
    if (std::strcmp(argv[i], "--grace-ms") == 0) {
      std::optional<long long> ms = ParseCount(argv[i + 1]);
      if (!ms) return false;
      out->grace = milliseconds(*ms);
    } else if (std::strcmp(argv[i], "--parent-pid") == 0) {
      std::optional<pid_t> pid = ParsePid(argv[i + 1]);
      if (!pid) return false;
      out->parent_pid = *pid;
    } else {
      return false;
    }
  }
  if (i >= argc || std::strcmp(argv[i], "--") != 0 || i + 1 >= argc) return false;
  out->argv.assign(argv + i + 1, argv + argc);
  out->argv.push_back(nullptr);
  return true;
}

// Blocks the signals the shim acts on and returns a signalfd for them, so
// they are handled in the main loop rather than in async handlers.
int OpenSignalFd(sigset_t* old_mask) {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, sig);
  sigprocmask(SIG_BLOCK, &set, old_mask);
  return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

// Waits up to `timeout_ms` (-1: no limit) for signals and drains them.
// Returns true if one asked for cancel; SIGCHLD only wakes us.
bool AwaitSignals(int sigfd, int timeout_ms) {
  pollfd p{sigfd, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) <= 0) return false;
  bool cancel = false;
  signalfd_siginfo info;
  while (read(sigfd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    if (info.ssi_signo != SIGCHLD) cancel = true;
  }
  return cancel;
}

int TickUntil(Clock::time_point deadline) {
  auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp(left, milliseconds(0), kTick).count());
}

// Runs in the forked child: own process group, the signal mask the shim
// started with, then exec. The shim is single-threaded, so stdio is safe.
[[noreturn]] void ExecCommand(char** argv, const sigset_t& mask) {
  setpgid(0, 0);
  sigprocmask(SIG_SETMASK, &mask, nullptr);
  execvp(argv[0], argv);
  std::fprintf(stderr, "yard: cannot run '%s': %s\n", argv[0], std::strerror(errno));
  _exit(127);
}

// Ends the shim the way the command ended. Dying by the command's signal
// lets the agent tell "killed by 9" from "exit 137"; the shim's own core
// dump would be noise, so dumping is switched off first.
int ExitLikeCommand(std::optional<int> status) {
  // No status: the command outlived SIGKILL, stuck in the kernel.
  if (!status) return 128 + SIGKILL;
  if (WIFEXITED(*status)) return WEXITSTATUS(*status);
  int sig = WTERMSIG(*status);
  prctl(PR_SET_DUMPABLE, 0);
  rlimit no_core{0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  signal(sig, SIG_DFL);
  sigset_t all_but_sig;  // a pending SIGTERM must not win over `sig`
  sigfillset(&all_but_sig);
  sigdelset(&all_but_sig, sig);
  sigprocmask(SIG_SETMASK, &all_but_sig, nullptr);
  raise(sig);
  return 128 + sig;  // the signal does not terminate by default
}

class Shim {
 public:
  Shim(int sigfd, milliseconds grace) : sigfd_(sigfd), grace_(grace) {}

  bool Launch(char** argv, const sigset_t& mask) {
    command_ = fork();
    if (command_ == 0) ExecCommand(argv, mask);
    // Also set here, so the group exists before we might signal it.
    if (command_ > 0) setpgid(command_, command_);
    return command_ > 0;
  }

  // Returns when the command has exited or a cancel signal arrived.
  void Supervise() {
    while (!status_) {
      if (AwaitSignals(sigfd_, -1)) return;
      Reap();
    }
  }

  // SIGTERM to every descendant (and to newcomers as they appear) for up to
  // the grace period, then SIGKILL until none is left.
  void EndDescendants() {
    std::set<pid_t> termed;
    auto deadline = Clock::now() + grace_;
    for (;;) {
      Reap();
      std::vector<ProcEntry> procs = DescendantEntries(getpid());
      if (procs.empty()) return;
      if (Clock::now() >= deadline) break;
      TerminateNew(procs, &termed);
      AwaitSignals(sigfd_, TickUntil(deadline));
    }
    std::fprintf(stderr, "yard: processes still running %lld ms after SIGTERM; sending SIGKILL\n",
                 static_cast<long long>(grace_.count()));
    KillUntilGone();
  }

  int Finish() const { return ExitLikeCommand(status_); }

 private:
  void KillUntilGone() {
    auto deadline = Clock::now() + kKillWait;
    while (Clock::now() < deadline) {
      KillDescendants(getpid());
      AwaitSignals(sigfd_, TickUntil(deadline));
      Reap();
      if (DescendantEntries(getpid()).empty()) return;
    }
  }

  // Reaps every exited child (orphans re-parented to us included) and
  // records the command's status when it is among them.
  void Reap() {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      if (pid == command_) status_ = status;
    }
  }

  int sigfd_;
  milliseconds grace_;
  pid_t command_ = -1;
  std::optional<int> status_;  // wait status of the command
};

// ---- the agent side ---------------------------------------------------------

Status Validate(const JobSpawnOptions& options) {
  if (options.argv.empty() || options.argv[0].empty()) return InvalidArgument("job command is empty");
  if (options.shim_executable.empty()) return InvalidArgument("no shim executable given");
  for (const auto& [name, value] : options.env) {
    if (name.empty() || name.find('=') != std::string::npos) {
      return InvalidArgument("bad environment variable name '" + name + "'");
    }
  }
  return Status::Ok();
}

std::vector<std::string> ShimArgv(const JobSpawnOptions& options) {
  long long grace = std::max<long long>(0, options.kill_grace.count());
  std::vector<std::string> args = {options.shim_executable, "shim",
                                   "--grace-ms",            std::to_string(grace),
                                   "--parent-pid",          std::to_string(getpid()),
                                   "--"};
  args.insert(args.end(), options.argv.begin(), options.argv.end());
  return args;
}

std::vector<std::string> EnvStrings(const std::map<std::string, std::string>& env) {
  std::vector<std::string> out;
  for (const auto& [name, value] : env) out.push_back(name + "=" + value);
  return out;
}

// Null-terminated array of pointers into `strings`, for exec.
std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// posix_spawn, not fork: it is safe in a threaded process and reports a
// failed chdir or exec as its return value (an errno).
int SpawnShim(std::vector<std::string> args, std::vector<std::string> env, const std::string& cwd,
              int out_fd, pid_t* pid) {
  std::vector<char*> argv = CStrings(args);
  std::vector<char*> envp = CStrings(env);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out_fd, STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  // The agent may ignore SIGPIPE or block signals; the job must not inherit that.
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  int rc = posix_spawn(pid, argv[0], &actions, &attr, argv.data(), envp.data());
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  return rc;
}

// waitpid on the shim; nullopt while it runs (WNOHANG).
std::optional<ExitInfo> WaitShim(pid_t pid, int flags) {
  int status;
  pid_t r;
  do {
    r = waitpid(pid, &status, flags);
  } while (r < 0 && errno == EINTR);
  if (r == pid) return FromWaitStatus(status);
  if (r < 0) {
    // Someone else reaped our child (SIGCHLD ignored?): a bug in the agent.
    std::perror("JobProcess: waitpid");
    std::abort();
  }
  return std::nullopt;
}

}  // namespace

std::string ExitInfo::Describe() const {
  if (signal == 0) return "exit code " + std::to_string(exit_code);
  const char* name = sigdescr_np(signal);  // thread-safe, unlike strsignal
  return "killed by signal " + std::to_string(signal) + " (" + (name ? name : "unknown signal") + ")";
}

StatusOr<std::unique_ptr<JobProcess>> JobProcess::Start(const JobSpawnOptions& options) {
  YARD_RETURN_IF_ERROR(Validate(options));
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return ErrnoStatus("creating the job's output pipe");
  fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
  pid_t pid = -1;
  int rc = SpawnShim(ShimArgv(options), EnvStrings(options.env), options.cwd, fds[1], &pid);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    errno = rc;
    std::string where = options.cwd.empty() ? "" : " in '" + options.cwd + "'";
    return ErrnoStatus("starting shim '" + options.shim_executable + "'" + where);
  }
  std::unique_ptr<JobProcess> job(new JobProcess());
  job->shim_pid_ = pid;
  job->output_fd_ = fds[0];
  return job;
}

JobProcess::~JobProcess() {
  if (!TryWait()) {
    // Descendants first: once the shim dies they are re-parented out of reach.
    KillDescendants(shim_pid_);
    kill(shim_pid_, SIGKILL);
    Wait();
  }
  close(output_fd_);
}

bool JobProcess::ReadAvailable(std::string* out) {
  char buf[64 * 1024];
  for (size_t total = 0; total < kMaxReadPerCall;) {
    ssize_t n = read(output_fd_, buf, sizeof buf);
    if (n > 0) {
      out->append(buf, static_cast<size_t>(n));
      total += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
  }
  return true;
}

std::optional<ExitInfo> JobProcess::TryWait() {
  if (!exit_) exit_ = WaitShim(shim_pid_, WNOHANG);
  return exit_;
}

ExitInfo JobProcess::Wait() {
  if (!exit_) exit_ = WaitShim(shim_pid_, 0);
  return *exit_;
}

void JobProcess::Terminate() {
  // Until we reap it, the shim's pid cannot be reused, so this never hits a
  // stranger.
  if (!TryWait()) kill(shim_pid_, SIGTERM);
}

std::vector<pid_t> ListDescendants(pid_t root) {
  std::vector<pid_t> pids;
  for (const ProcEntry& p : DescendantEntries(root)) pids.push_back(p.pid);
  return pids;
}

int RunShim(int argc, char** argv) {
  ShimArgs args;
  if (!ParseShimArgs(argc, argv, &args)) {
    std::fprintf(stderr, "usage: yard shim [--grace-ms N] [--parent-pid P] -- COMMAND [ARG...]\n");
    return 2;
  }
  signal(SIGCHLD, SIG_DFL);  // an inherited SIG_IGN would auto-reap the command
  sigset_t old_mask;
  int sigfd = OpenSignalFd(&old_mask);
  if (sigfd < 0) {
    std::perror("yard shim: signalfd");
    return kShimFailure;
  }
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  // The agent may have died before the death signal was armed.
  if (args.parent_pid > 0 && getppid() != args.parent_pid) return 128 + SIGTERM;
  Shim shim(sigfd, args.grace);
  if (!shim.Launch(args.argv.data(), old_mask)) {
    std::perror("yard shim: fork");
    return kShimFailure;
  }
  shim.Supervise();
  shim.EndDescendants();
  return shim.Finish();
}

}  // namespace yard
