#include "agent/shim_zygote.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>

#include "agent/agent_log.h"
#include "agent/job_process.h"
#include "common/process.h"
#include "shim/zygote.h"

namespace yard {
namespace {

// How long the agent waits for the zygote's answer before it counts the
// zygote as hung, ends it and starts another (a fork takes well under 1 ms).
constexpr int kAnswerTimeoutMs = 10000;

// The request of shim/zygote.h.
std::string Request(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                    const std::string& cwd, const std::string& layout) {
  std::string r = std::to_string(argv.size()) + '\0' + std::to_string(env.size()) + '\0' + layout;
  r += '\0';
  for (const std::string& s : argv) r += s + '\0';
  for (const std::string& s : env) r += s + '\0';
  return r + cwd + '\0';
}

bool SendWithFds(int sock, const std::string& data, const std::vector<int>& fds) {
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  iovec iov{const_cast<char*>(data.data()), data.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  ssize_t n;
  do {
    n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(data.size());
}

// The zygote's answer: its int32 and the go pipe's descriptor (-1 without).
// False when the zygote is gone, hung or garbled.
bool ReceiveAnswer(int sock, int32_t* value, int* go_fd) {
  pollfd p{sock, POLLIN, 0};
  int ready;
  do {
    ready = poll(&p, 1, kAnswerTimeoutMs);
  } while (ready < 0 && errno == EINTR);
  if (ready <= 0) return false;
  std::vector<int> fds;
  bool truncated = false;
  ssize_t n = ReceiveWithFds(sock, value, sizeof *value, &fds, &truncated);
  *go_fd = fds.empty() ? -1 : fds[0];
  for (size_t i = 1; i < fds.size(); ++i) close(fds[i]);  // the protocol sends one
  return n == static_cast<ssize_t>(sizeof *value) && !truncated;
}

}  // namespace

ShimZygote::ShimZygote(std::string shim) : shim_(std::move(shim)) {
  owner_ = std::thread([this] { OwnerLoop(); });
}

ShimZygote::~ShimZygote() {
  {
    MutexLock lock(mu_);
    if (sock_ >= 0) DropZygote();
    stopping_ = true;
    cv_.notify_all();
  }
  owner_.join();
}

pid_t ShimZygote::zygote_pid() {
  MutexLock lock(mu_);
  return pid_;
}

void ShimZygote::OwnerLoop() {
  MutexLock lock(mu_);
  for (;;) {
    cv_.wait(lock.unique(), [this]() REQUIRES(mu_) { return stopping_ || start_wanted_; });
    if (stopping_) return;
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) == 0) {
      ChildSpec child;
      child.argv = ShimCommand(shim_);
      child.argv.insert(child.argv.end(), {"--zygote", std::to_string(getpid())});
      child.search_path = false;
      // None of the agent's environment (its secrets): a shim's memory
      // keeps the zygote's, and /proc/PID/environ of an unconfined job's
      // shim would show it. Each shim gets its job's with its request.
      child.env = std::vector<std::string>{};
      // (Not close_other_fds: it would close the socket too. The agent opens
      // every descriptor close-on-exec, as for the shims it spawns.)
      child.fds = {{-1, STDIN_FILENO}, {pair[1], kZygoteSocketFd}};
      int rc = SpawnChild(child, &pid_);
      close(pair[1]);
      if (rc == 0) {
        sock_ = pair[0];
      } else {
        close(pair[0]);
        pid_ = -1;
        AgentLog(std::string("the shim's zygote could not be started (each job's shim is spawned "
                             "instead): ") +
                 std::strerror(rc));
      }
    }
    start_wanted_ = false;
    cv_.notify_all();
  }
}

bool ShimZygote::StartZygote(MutexLock& lock) {
  start_wanted_ = true;
  cv_.notify_all();
  cv_.wait(lock.unique(), [this]() REQUIRES(mu_) { return !start_wanted_ || stopping_; });
  return sock_ >= 0;
}

void ShimZygote::DropZygote() {
  close(sock_);
  sock_ = -1;
  // Never kill(-1, ...), which would reach every process. The zygote is
  // stateless: nothing of a job is lost with it.
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  pid_ = -1;
}

int ShimZygote::Ask(const std::string& request, const std::vector<int>& fds, pid_t* pid) {
  if (!SendWithFds(sock_, request, fds)) return -1;
  int32_t value = 0;
  int go_fd = -1;
  if (!ReceiveAnswer(sock_, &value, &go_fd)) {
    if (go_fd >= 0) close(go_fd);
    return -1;
  }
  if (value <= 0) return value == 0 ? EPROTO : -value;
  if (go_fd < 0) return EPROTO;
  *pid = value;
  // The shim starts now that we know its pid. Should it be dead already
  // (killed), waitpid tells the caller.
  char go = 1;
  while (write(go_fd, &go, 1) < 0 && errno == EINTR) {
  }
  close(go_fd);
  return 0;
}

int ShimZygote::Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                      const std::string& cwd, int out_fd, int in_fd, int ns_fd, pid_t* pid) {
  std::string layout = "o";
  std::vector<int> fds = {out_fd};
  if (in_fd >= 0) {
    layout += 'i';
    fds.push_back(in_fd);
  }
  if (ns_fd >= 0) {
    layout += 'n';
    fds.push_back(ns_fd);
  }
  std::error_code ec;
  std::string here = cwd.empty() ? std::filesystem::current_path(ec).string() : cwd;
  if (here.empty()) return -1;
  std::string request = Request(argv, env, here, layout);
  if (request.size() > static_cast<size_t>(kZygoteMaxRequest)) return -1;
  MutexLock lock(mu_);
  // A zygote that died since the last job is replaced once per start.
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (unusable_) return -1;
    if (sock_ < 0 && !StartZygote(lock)) {
      unusable_ = true;  // said in the agent log once; spawned shims from now on
      return -1;
    }
    int rc = Ask(request, fds, pid);
    if (rc >= 0) {
      served_ = true;
      return rc;
    }
    DropZygote();
    // One that fails its first request (an older yard-shim beside a newer
    // yard, without --zygote) would fail every time: spawn shims from now on.
    if (!served_) {
      unusable_ = true;
      AgentLog("the shim's zygote ended at its first job (each job's shim is spawned instead)");
      return -1;
    }
    served_ = false;
  }
  return -1;
}

}  // namespace yard
