#include "shim/shim.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <set>
#include <vector>

#include "shim/proc_tree.h"
#include "shim/sandbox_entry.h"
#include "shim/zygote.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/lsan_interface.h>
#define YARD_LEAK_SANITIZER 1
#endif
#endif

namespace yard {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Longest the shim waits between two looks at the process tree.
constexpr milliseconds kTick{20};
// After SIGKILL, how long the shim waits for the tree to vanish; only a
// process stuck in uninterruptible sleep takes longer.
constexpr milliseconds kKillWait{5000};

struct ShimArgs {
  milliseconds grace{5000};
  pid_t parent_pid = 0;
  bool sandboxed = false;
  SandboxEntry entry;       // entry.mount_ns_fd >= 0: --enter-sandbox
  std::vector<char*> argv;  // null-terminated
};

bool ParseShimArgs(int argc, char** argv, ShimArgs* out) {
  int i = 1;
  for (; i + 1 < argc && std::strcmp(argv[i], "--") != 0; i += 2) {
    if (std::strcmp(argv[i], "--sandboxed") == 0) {
      out->sandboxed = true;
      --i;  // a flag without a value
    } else if (std::strcmp(argv[i], "--enter-sandbox") == 0) {
      std::optional<long long> fd = ParseCount(argv[i + 1]);
      if (!fd || *fd > 1 << 20) return false;
      out->entry.mount_ns_fd = static_cast<int>(*fd);
    } else if (std::strcmp(argv[i], "--fresh") == 0) {
      if (argv[i + 1][0] != '/') return false;
      out->entry.fresh.push_back(argv[i + 1]);
    } else if (std::strcmp(argv[i], "--grace-ms") == 0) {
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

// SIGTERM (then SIGCONT, so a stopped process can act on it) to every
// process of `procs` not yet in `termed` and not in process group `spare`
// (the sandbox's own processes, which end when the command does).
void TerminateNew(const std::vector<ProcEntry>& procs, std::set<pid_t>* termed, pid_t spare) {
  for (const ProcEntry& p : procs) {
    if (p.pgid == spare || !termed->insert(p.pid).second) continue;
    SignalProcessAndGroup(p, SIGTERM);
    SignalProcessAndGroup(p, SIGCONT);
  }
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

// A sandbox (bwrap) exits with 128 + N when its command died of signal N:
// read it back as that death, as a shell would.
std::optional<int> FromSandbox(std::optional<int> status) {
  if (!status || !WIFEXITED(*status)) return status;
  int code = WEXITSTATUS(*status);
  if (code <= 128 || code > 128 + 64) return status;
  return (code - 128) & 0x7f;  // a wait status "killed by signal N"
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

// --enter-sandbox FD: FD must be a mount namespace other than the shim's
// own (anything else would run the job unconfined), kept from the job
// (close-on-exec). Then the job's init gets a PID namespace of its own.
// Under AddressSanitizer (the sanitized build, fuzz/README.md): runs the
// leak check that would run at exit, now, and only once. That check stops
// this process from a task it clones, which after unshare(CLONE_NEWPID)
// would be born in the job's PID namespace, where this process has no PID:
// the check would end in a fatal error instead of checking.
void CheckLeaksBeforeLeavingOurPidNamespace() {
#ifdef YARD_LEAK_SANITIZER
  __lsan_do_leak_check();
#endif
}

bool PrepareSandboxEntry(const SandboxEntry& entry) {
  int fd = entry.mount_ns_fd;
  struct stat given, own;
  if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 || ioctl(fd, NS_GET_NSTYPE) != CLONE_NEWNS ||
      fstat(fd, &given) != 0 || stat("/proc/self/ns/mnt", &own) != 0 ||
      (given.st_dev == own.st_dev && given.st_ino == own.st_ino)) {
    std::fprintf(stderr, "yard shim: --enter-sandbox %d is not a sandbox's mount namespace\n", fd);
    return false;
  }
  CheckLeaksBeforeLeavingOurPidNamespace();
  if (unshare(CLONE_NEWPID) != 0) {
    std::perror("yard shim: a PID namespace for the job (needs CAP_SYS_ADMIN)");
    return false;
  }
  return true;
}

class Shim {
 public:
  Shim(int sigfd, milliseconds grace, bool sandboxed, const SandboxEntry* entry)
      : sigfd_(sigfd), grace_(grace), sandboxed_(sandboxed), entry_(entry) {}

  bool Launch(char** argv, const sigset_t& mask) {
    command_ = fork();
    if (command_ == 0 && entry_) {
      setpgid(0, 0);
      RunInSandbox(*entry_, argv, mask);
    }
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
      // The common case, a job that left nothing behind, costs no /proc walk.
      if (!Reap()) return;
      std::vector<ProcEntry> procs = DescendantEntries(getpid());
      if (procs.empty()) return;
      if (Clock::now() >= deadline) break;
      TerminateNew(procs, &termed, sandboxed_ ? command_ : 0);
      AwaitSignals(sigfd_, TickUntil(deadline));
    }
    std::fprintf(stderr, "yard: processes still running %lld ms after SIGTERM; sending SIGKILL\n",
                 static_cast<long long>(grace_.count()));
    KillUntilGone();
  }

  int Finish() const { return ExitLikeCommand(sandboxed_ ? FromSandbox(status_) : status_); }

 private:
  void KillUntilGone() {
    auto deadline = Clock::now() + kKillWait;
    while (Clock::now() < deadline) {
      KillDescendants(getpid());
      AwaitSignals(sigfd_, TickUntil(deadline));
      if (!Reap()) return;
      if (DescendantEntries(getpid()).empty()) return;
    }
  }

  // Reaps every exited child (orphans re-parented to us included) and
  // records the command's status when it is among them. Returns whether a
  // child is left: ECHILD means none, and since the shim is a child
  // subreaper, every descendant it still has would be below some child, so
  // none is left at all.
  bool Reap() {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      if (pid == command_) status_ = status;
    }
    return !(pid < 0 && errno == ECHILD);
  }

  int sigfd_;
  milliseconds grace_;
  bool sandboxed_;
  const SandboxEntry* entry_;  // null: no --enter-sandbox
  pid_t command_ = -1;
  std::optional<int> status_;  // wait status of the command
};

}  // namespace

int RunShim(int argc, char** argv) {
  // Inside a sandbox: only run the command, with the shim's words on failure.
  if (argc >= 4 && std::strcmp(argv[1], "--exec") == 0 && std::strcmp(argv[2], "--") == 0) {
    execvp(argv[3], argv + 3);
    std::fprintf(stderr, "yard: cannot run '%s': %s\n", argv[3], std::strerror(errno));
    return 127;
  }
  // The holder of a sandbox template (agent/sandbox_template.h): says it is
  // in, then stays until its stdin closes.
  if (argc == 2 && std::strcmp(argv[1], "--hold") == 0) {
    if (write(STDOUT_FILENO, "ready\n", 6) != 6) return kShimFailure;
    char c;
    for (;;) {
      ssize_t n = read(STDIN_FILENO, &c, 1);
      if (n == 0 || (n < 0 && errno != EINTR)) return 0;
    }
  }
  // The agent's zygote (shim/zygote.h): forks shims until the agent leaves.
  if (argc == 3 && std::strcmp(argv[1], "--zygote") == 0) {
    std::optional<pid_t> agent = ParsePid(argv[2]);
    return agent ? RunZygote(*agent) : 2;
  }
  ShimArgs args;
  if (!ParseShimArgs(argc, argv, &args)) {
    std::fprintf(stderr,
                 "usage: yard-shim (or yard shim) [--grace-ms N] [--parent-pid P] [--sandboxed]\n"
                 "                 [--enter-sandbox FD [--fresh DIR]...] -- COMMAND [ARG...]\n"
                 "       yard-shim --exec -- COMMAND [ARG...]\n"
                 "       yard-shim --hold\n"
                 "       yard-shim --zygote AGENT_PID\n");
    return 2;
  }
  const SandboxEntry* entry = nullptr;
  if (args.entry.mount_ns_fd >= 0) {
    if (!PrepareSandboxEntry(args.entry)) return kShimFailure;
    entry = &args.entry;
    args.sandboxed = true;  // the job's init sits between: as with bwrap
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
  Shim shim(sigfd, args.grace, args.sandboxed, entry);
  if (!shim.Launch(args.argv.data(), old_mask)) {
    std::perror("yard shim: fork");
    return kShimFailure;
  }
  shim.Supervise();
  shim.EndDescendants();
  return shim.Finish();
}

}  // namespace yard
