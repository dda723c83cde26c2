#include "agent/job_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>

#include "agent/shim_zygote.h"
#include "common/process.h"
#include "shim/proc_tree.h"

namespace yard {
namespace {

constexpr size_t kMaxReadPerCall = 1 << 20;

ExitInfo FromWaitStatus(int status) {
  if (WIFSIGNALED(status)) return {128 + WTERMSIG(status), WTERMSIG(status)};
  return {WEXITSTATUS(status), 0};
}

// ---- the agent side ---------------------------------------------------------

Status Validate(const JobSpawnOptions& options) {
  if (options.argv.empty() || options.argv[0].empty())
    return InvalidArgument("job command is empty");
  if (options.shim_executable.empty()) return InvalidArgument("no shim executable given");
  for (const auto& [name, value] : options.env) {
    if (name.empty() || name.find('=') != std::string::npos) {
      return InvalidArgument("bad environment variable name '" + name + "'");
    }
  }
  return Status::Ok();
}

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The shim's argv up to its options: `yard-shim` itself, the `yard-shim`
// beside the given `yard` when there is one (a libc-only executable that
// starts in a fraction of the time), else `yard shim`.
std::vector<std::string> ShimPrefix(const std::string& executable) {  // ShimCommand
  if (BaseName(executable) == kShimName) return {executable};
  size_t slash = executable.rfind('/');
  if (slash != std::string::npos) {
    std::string beside = executable.substr(0, slash + 1) + kShimName;
    if (access(beside.c_str(), X_OK) == 0) return {beside};
  }
  return {executable, "shim"};
}

// The descriptor number the shim finds a sandbox's mount namespace on.
constexpr int kSandboxNsFd = 3;

std::vector<std::string> ShimArgv(const JobSpawnOptions& options) {
  long long grace = std::max<long long>(0, options.kill_grace.count());
  std::vector<std::string> shim = ShimPrefix(options.shim_executable);
  std::vector<std::string> args = shim;
  args.insert(args.end(),
              {"--grace-ms", std::to_string(grace), "--parent-pid", std::to_string(getpid())});
  if (options.sandbox_ns_fd >= 0) {
    args.insert(args.end(), {"--enter-sandbox", std::to_string(kSandboxNsFd)});
    for (const std::string& dir : options.sandbox_fresh) args.insert(args.end(), {"--fresh", dir});
  } else if (!options.sandbox.empty()) {
    // shim --sandboxed -- bwrap ... -- shim --exec -- COMMAND
    args.push_back("--sandboxed");
    args.push_back("--");
    args.insert(args.end(), options.sandbox.begin(), options.sandbox.end());
    args.insert(args.end(), shim.begin(), shim.end());
    args.push_back("--exec");
  }
  args.push_back("--");
  args.insert(args.end(), options.argv.begin(), options.argv.end());
  return args;
}

std::vector<std::string> EnvStrings(const std::map<std::string, std::string>& env) {
  std::vector<std::string> out;
  for (const auto& [name, value] : env) out.push_back(name + "=" + value);
  return out;
}

// The shim with the job's output on `out_fd` (stdout and stderr), its
// input on `in_fd` (or /dev/null) and a sandbox's mount namespace on
// kSandboxNsFd when `ns_fd` >= 0.
int SpawnShim(std::vector<std::string> args, std::vector<std::string> env, const std::string& cwd,
              int out_fd, int in_fd, int ns_fd, pid_t* pid) {
  ChildSpec child;
  child.argv = std::move(args);
  child.search_path = false;
  child.env = std::move(env);
  child.fds = {{out_fd, STDOUT_FILENO}, {out_fd, STDERR_FILENO}, {in_fd, STDIN_FILENO}};
  if (ns_fd >= 0) child.fds.push_back({ns_fd, kSandboxNsFd});
  child.cwd = cwd;
  return SpawnChild(child, pid);
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

std::vector<std::string> ShimCommand(const std::string& shim_executable) {
  return ShimPrefix(shim_executable);
}

std::string ExitInfo::Describe() const {
  if (signal == 0) return "exit code " + std::to_string(exit_code);
  const char* name = sigdescr_np(signal);  // thread-safe, unlike strsignal
  return "killed by signal " + std::to_string(signal) + " (" + (name ? name : "unknown signal") +
         ")";
}

StatusOr<std::unique_ptr<JobProcess>> JobProcess::Start(const JobSpawnOptions& options) {
  YARD_RETURN_IF_ERROR(Validate(options));
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return ErrnoStatus("creating the job's output pipe");
  fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
  pid_t pid = -1;
  std::vector<std::string> argv = ShimArgv(options);
  std::string shim = argv[0];
  std::vector<std::string> env = EnvStrings(options.env);
  int rc = -1;  // -1: the zygote cannot, spawn the shim
  if (options.zygote && ShimPrefix(options.shim_executable).size() == 1) {  // yard-shim
    rc = options.zygote->Spawn(argv, env, options.cwd, fds[1], options.stdin_fd,
                               options.sandbox_ns_fd, &pid);
  }
  if (rc < 0) {
    rc = SpawnShim(std::move(argv), std::move(env), options.cwd, fds[1], options.stdin_fd,
                   options.sandbox_ns_fd, &pid);
  }
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    errno = rc;
    std::string where = options.cwd.empty() ? "" : " in '" + options.cwd + "'";
    return ErrnoStatus("starting shim '" + shim + "'" + where);
  }
  std::unique_ptr<JobProcess> job(new JobProcess());
  job->shim_pid_ = pid;
  job->sandbox_levels_ = options.sandbox_ns_fd >= 0 ? 1 : options.sandbox.empty() ? 0 : 2;
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

Status JobProcess::Signal(int sig) {
  if (TryWait()) return NotFound("the job has ended");
  std::vector<ProcEntry> procs = DescendantEntries(shim_pid_);
  // Confined, the command (and what is re-parented to it) sits further
  // down, below bwrap and bwrap's init in the job's PID namespace (or the
  // init of an entered sandbox), which pass no signal on; its session is
  // its own (--new-session).
  std::set<pid_t> parents = {shim_pid_};
  for (int level = 0; level < sandbox_levels_; ++level) {
    std::set<pid_t> next;
    for (const ProcEntry& p : procs)
      if (parents.count(p.ppid)) next.insert(p.pid);
    parents = std::move(next);
  }
  int sent = 0;
  for (const ProcEntry& p : procs) {
    if (!parents.count(p.ppid)) continue;
    SignalProcessAndGroup(p, sig);
    ++sent;
  }
  return sent ? Status::Ok() : NotFound("the job's command has ended");
}

}  // namespace yard
