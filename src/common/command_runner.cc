#include "common/command_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <map>

#include "common/process.h"

namespace yard {

std::string CommandResult::Reason() const {
  for (const std::string* text : {&err, &out}) {
    size_t end = text->find_last_not_of(" \t\r\n");
    if (end == std::string::npos) continue;
    size_t newline = text->rfind('\n', end);
    size_t start = newline == std::string::npos ? 0 : newline + 1;
    return text->substr(start, end + 1 - start);
  }
  return "exit code " + std::to_string(exit_code);
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

namespace {

std::vector<std::string> MergedEnvironment(const std::vector<std::string>& extra) {
  std::map<std::string, std::string> env;
  for (const auto& list : {CurrentEnvironment(), extra})
    for (const auto& kv : list) {
      size_t eq = kv.find('=');
      if (eq != std::string::npos) env[kv.substr(0, eq)] = kv;
    }
  std::vector<std::string> out;
  for (auto& [k, kv] : env) out.push_back(std::move(kv));
  return out;
}

struct Pipes {
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  ~Pipes() {
    for (int* p : {in, out, err})
      for (int i = 0; i < 2; ++i)
        if (p[i] >= 0) ::close(p[i]);
  }
  Status Open() {
    for (int* p : {in, out, err})
      if (::pipe2(p, O_CLOEXEC) != 0) return ErrnoStatus("pipe");
    return Status::Ok();
  }
  static void Close(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

StatusOr<pid_t> Spawn(const CommandSpec& spec, Pipes& p) {
  ChildSpec child;
  child.argv = spec.argv;
  child.env = MergedEnvironment(spec.env);
  child.fds = {{p.in[0], 0}, {p.out[1], 1}, {p.err[1], 2}};
  pid_t pid = -1;
  if (int rc = SpawnChild(child, &pid); rc != 0) {
    errno = rc;
    return ErrnoStatus("cannot run " + spec.argv[0]);
  }
  return pid;
}

// Hands the complete lines of `text` from `*done` on to `on_line`; with
// `at_end`, also a last line without its newline.
void PassLines(const std::string& text, size_t* done, bool at_end,
               const std::function<void(const std::string&)>& on_line) {
  if (!on_line) return;
  for (size_t nl; (nl = text.find('\n', *done)) != std::string::npos; *done = nl + 1)
    on_line(text.substr(*done, nl - *done));
  if (at_end && *done < text.size()) {
    on_line(text.substr(*done));
    *done = text.size();
  }
}

// Feeds stdin and drains stdout/stderr until both close or `deadline`.
bool Pump(Pipes& p, const CommandSpec& spec, std::chrono::steady_clock::time_point deadline,
          CommandResult* r) {
  const std::string& input = spec.input;
  size_t passed[2] = {0, 0};  // of r->out and r->err, handed to spec.on_line
  size_t written = 0;
  if (input.empty())
    Pipes::Close(p.in[1]);
  else
    ::fcntl(p.in[1], F_SETFL, O_NONBLOCK);
  while (p.out[0] >= 0 || p.err[0] >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    struct pollfd fds[3] = {{p.out[0], POLLIN, 0}, {p.err[0], POLLIN, 0}, {p.in[1], POLLOUT, 0}};
    ::poll(fds, 3, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (p.in[1] >= 0 && (fds[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t n = ::write(p.in[1], input.data() + written, input.size() - written);
      if (n > 0) written += static_cast<size_t>(n);
      if (n < 0 && errno != EAGAIN) written = input.size();
      if (written >= input.size()) Pipes::Close(p.in[1]);
    }
    for (int i = 0; i < 2; ++i) {
      int& fd = i == 0 ? p.out[0] : p.err[0];
      if (fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[8192];
      ssize_t n = ::read(fd, buf, sizeof(buf));
      std::string& text = i == 0 ? r->out : r->err;
      if (n > 0)
        text.append(buf, static_cast<size_t>(n));
      else if (n == 0 || errno != EINTR)
        Pipes::Close(fd);
      PassLines(text, &passed[i], fd < 0, spec.on_line);
    }
  }
  return true;
}

// Blocks SIGPIPE in this thread while alive, and discards one raised
// meanwhile, so a write to a closed pipe fails with EPIPE instead of
// killing the process.
class SigpipeBlocked {
 public:
  SigpipeBlocked() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set_, &old_);
  }
  ~SigpipeBlocked() {
    struct timespec zero = {0, 0};
    while (sigtimedwait(&set_, nullptr, &zero) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t set_, old_;
};

}  // namespace

StatusOr<CommandResult> ProcessCommandRunner::Run(const CommandSpec& spec) {
  if (spec.argv.empty()) return InvalidArgument("empty command");
  Pipes p;
  YARD_RETURN_IF_ERROR(p.Open());
  YARD_ASSIGN_OR_RETURN(pid_t pid, Spawn(spec, p));
  Pipes::Close(p.in[0]);
  Pipes::Close(p.out[1]);
  Pipes::Close(p.err[1]);
  CommandResult r;
  bool finished;
  {
    SigpipeBlocked guard;  // a child that exits before reading its input
    finished = Pump(p, spec, std::chrono::steady_clock::now() + spec.timeout, &r);
  }
  if (!finished) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!finished)
    return DeadlineExceeded(spec.argv[0] + " did not finish within " +
                            std::to_string(spec.timeout.count() / 1000) + " s");
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace yard
