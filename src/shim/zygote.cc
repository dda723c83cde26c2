#include "shim/zygote.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "shim/shim.h"

extern char** environ;

namespace yard {
namespace {

// A parsed request; the strings point into the receive buffer.
struct Request {
  std::vector<char*> argv;  // null-terminated
  std::vector<char*> env;   // null-terminated
  const char* cwd = nullptr;
  int out_fd = -1, in_fd = -1, ns_fd = -1;
};

// Receives one request into `buf`. Returns the bytes read (0: the agent
// closed the socket, -1: an error, -2: too large), with the attached
// descriptors in `fds`.
ssize_t Receive(std::vector<char>* buf, std::vector<int>* fds) {
  fds->clear();
  bool truncated = false;
  ssize_t n = ReceiveWithFds(kZygoteSocketFd, buf->data(), buf->size() - 1, fds, &truncated);
  if (n > 0 && truncated) return -2;
  if (n >= 0) (*buf)[static_cast<size_t>(n)] = '\0';
  return n;
}

// Splits `buf[0, n)` into the request; false when it is malformed.
bool Parse(char* buf, size_t n, const std::vector<int>& fds, Request* r) {
  std::vector<char*> strings;
  for (size_t i = 0; i < n; i += std::strlen(buf + i) + 1) strings.push_back(buf + i);
  if (strings.size() < 4) return false;
  long argc = std::atol(strings[0]), envc = std::atol(strings[1]);
  std::string layout = strings[2];
  if (argc < 1 || envc < 0 || strings.size() != 3 + static_cast<size_t>(argc + envc) + 1)
    return false;
  if (layout.size() != fds.size() || layout.empty() || layout[0] != 'o') return false;
  r->argv.assign(strings.begin() + 3, strings.begin() + 3 + argc);
  r->argv.push_back(nullptr);
  r->env.assign(strings.begin() + 3 + argc, strings.begin() + 3 + argc + envc);
  r->env.push_back(nullptr);
  r->cwd = strings.back();
  for (size_t i = 0; i < layout.size(); ++i) {
    if (layout[i] == 'o')
      r->out_fd = fds[i];
    else if (layout[i] == 'i')
      r->in_fd = fds[i];
    else if (layout[i] == 'n')
      r->ns_fd = fds[i];
    else
      return false;
  }
  return true;
}

// The answer: `value` (a pid, or -errno), with `go_fd` attached when >= 0.
void Answer(int32_t value, int go_fd) {
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  iovec iov{&value, sizeof value};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (go_fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &go_fd, sizeof go_fd);
  }
  while (sendmsg(kZygoteSocketFd, &msg, MSG_NOSIGNAL) < 0 && errno == EINTR) {
  }
}

// In the forked shim: waits for the agent's go, sets up the descriptors
// and the environment, then is the shim. Never returns.
[[noreturn]] void BeShim(const Request& r, int go_read_fd) {
  close(kZygoteSocketFd);
  char go;
  ssize_t n;
  do {
    n = read(go_read_fd, &go, 1);
  } while (n < 0 && errno == EINTR);
  // EOF: the agent never learned of this shim; start nothing.
  if (n != 1) _exit(kShimFailure);
  int in = r.in_fd >= 0 ? r.in_fd : open("/dev/null", O_RDONLY | O_CLOEXEC);
  // dup2 clears close-on-exec on the copy; every source is above 3
  // (0-2 and the socket were open when they were received or opened).
  if (in < 0 || dup2(in, STDIN_FILENO) < 0 || dup2(r.out_fd, STDOUT_FILENO) < 0 ||
      dup2(r.out_fd, STDERR_FILENO) < 0 || (r.ns_fd >= 0 && dup2(r.ns_fd, 3) < 0)) {
    std::perror("yard shim: setting up the job's descriptors");
    _exit(kShimFailure);
  }
  close_range(r.ns_fd >= 0 ? 4 : 3, ~0U, 0);
  environ = const_cast<char**>(r.env.data());
  int code = RunShim(static_cast<int>(r.argv.size()) - 1, const_cast<char**>(r.argv.data()));
  std::fflush(nullptr);
  _exit(code);
}

// Forks the shim of `r` as the agent's child and answers with its pid.
void Start(const Request& r) {
  if (chdir(r.cwd) != 0) return Answer(-errno, -1);
  int go[2];
  if (pipe2(go, O_CLOEXEC) != 0) {
    int err = errno;
    chdir("/");
    return Answer(-err, -1);
  }
  // A raw clone: glibc's fork() has no CLONE_PARENT. The zygote is
  // single-threaded and holds no lock, so the child may use libc freely.
  long pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, nullptr, nullptr, nullptr, 0);
  if (pid == 0) {
    close(go[1]);
    BeShim(r, go[0]);
  }
  int err = errno;
  close(go[0]);
  chdir("/");  // keeps no job folder busy
  Answer(pid > 0 ? static_cast<int32_t>(pid) : -err, pid > 0 ? go[1] : -1);
  close(go[1]);
}

}  // namespace

ssize_t ReceiveWithFds(int sock, void* buf, size_t size, std::vector<int>* fds, bool* truncated) {
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kZygoteMaxFds)];
  iovec iov{buf, size};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  *truncated = n > 0 && (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC));
  if (n < 0) return n;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds->push_back(fd);
    }
  }
  return n;
}

int RunZygote(pid_t agent_pid) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != agent_pid || fcntl(kZygoteSocketFd, F_GETFD) < 0) return kShimFailure;
  // 0-2 open (on /dev/null when the agent had one closed), so that every
  // descriptor received or made from here on is above 3 (BeShim).
  for (int fd = 0; fd < 3; ++fd)
    if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd) return kShimFailure;
  chdir("/");
  signal(SIGPIPE, SIG_DFL);
  std::vector<char> buf(kZygoteMaxRequest + 1);
  std::vector<int> fds;
  for (;;) {
    ssize_t n = Receive(&buf, &fds);
    if (n == 0) return 0;
    if (n == -1) return errno == ECONNRESET ? 0 : kShimFailure;
    Request r;
    if (n < 0 || !Parse(buf.data(), static_cast<size_t>(n), fds, &r))
      Answer(n < 0 ? -EMSGSIZE : -EINVAL, -1);
    else
      Start(r);
    for (int fd : fds) close(fd);
  }
}

}  // namespace yard
