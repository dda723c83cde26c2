#include "common/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/files.h"

extern char** environ;

namespace yard {

std::vector<std::string> CurrentEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  return env;
}

bool ProcessAlive(int pid, const std::string& marker) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  StatusOr<std::string> stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!stat.ok()) return false;
  size_t rp = stat->rfind(')');
  if (rp != std::string::npos && rp + 2 < stat->size() && (*stat)[rp + 2] == 'Z') return false;
  StatusOr<std::string> cmd = ReadFile("/proc/" + std::to_string(pid) + "/cmdline");
  return cmd.ok() && cmd->find(marker) != std::string::npos;
}

StatusOr<int> SpawnDetached(const std::vector<std::string>& argv,
                            const std::vector<std::string>& env, const std::string& log_path) {
  // Everything the children use is prepared before fork: after fork in a
  // threaded process only async-signal-safe calls are allowed.
  std::vector<char*> cargv, cenv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const auto& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);
  int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return ErrnoStatus("cannot open " + log_path);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) { ::close(log_fd); ::close(null_fd); return ErrnoStatus("pipe"); }
  pid_t child = ::fork();
  if (child < 0) return ErrnoStatus("fork");
  if (child == 0) {
    ::setsid();
    pid_t grandchild = ::fork();
    if (grandchild == 0) {
      ::dup2(null_fd, 0);
      ::dup2(log_fd, 1);
      ::dup2(log_fd, 2);
      ::execve(cargv[0], cargv.data(), cenv.data());
      ::_exit(127);
    }
    ssize_t ignored = ::write(pipefd[1], &grandchild, sizeof(grandchild));
    (void)ignored;
    ::_exit(0);
  }
  ::close(pipefd[1]);
  ::close(log_fd);
  ::close(null_fd);
  pid_t grandchild = -1;
  ssize_t n = ::read(pipefd[0], &grandchild, sizeof(grandchild));
  ::close(pipefd[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  if (n != sizeof(grandchild) || grandchild <= 0) return Internal("could not start " + argv[0]);
  return static_cast<int>(grandchild);
}

}  // namespace yard
