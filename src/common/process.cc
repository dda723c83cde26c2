#include "common/process.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <set>

#include "common/files.h"

extern char** environ;

namespace yard {

std::vector<std::string> CurrentEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  return env;
}

namespace {

// Null-terminated array of pointers into `strings`, for exec.
std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// posix_spawn's descriptor actions for `spec`.
void AddFileActions(const ChildSpec& spec, posix_spawn_file_actions_t* actions) {
  for (auto [from, to] : spec.fds) {
    if (from < 0)
      posix_spawn_file_actions_addopen(actions, to, "/dev/null", O_RDONLY, 0);
    else
      posix_spawn_file_actions_adddup2(actions, from, to);
  }
  if (!spec.cwd.empty()) posix_spawn_file_actions_addchdir_np(actions, spec.cwd.c_str());
  if (spec.close_other_fds) posix_spawn_file_actions_addclosefrom_np(actions, 3);
}

}  // namespace

int SpawnChild(const ChildSpec& spec, pid_t* pid) {
  if (spec.argv.empty()) return EINVAL;
  std::vector<std::string> args = spec.argv;
  std::vector<std::string> env = spec.env ? *spec.env : std::vector<std::string>{};
  std::vector<char*> argv = CStrings(args);
  std::vector<char*> envp = CStrings(env);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  AddFileActions(spec, &actions);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
  if (spec.new_process_group) {
    posix_spawnattr_setpgroup(&attr, 0);
    flags |= POSIX_SPAWN_SETPGROUP;
  }
  posix_spawnattr_setflags(&attr, flags);
  char** envv = spec.env ? envp.data() : environ;
  int rc = spec.search_path ? posix_spawnp(pid, argv[0], &actions, &attr, argv.data(), envv)
                            : posix_spawn(pid, argv[0], &actions, &attr, argv.data(), envv);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  return rc;
}

bool IsSecretEnvName(const std::string& key_value) {
  std::string name = key_value.substr(0, key_value.find('='));
  for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  // AWS_* is secret unless it is one of these settings (an address, a
  // region, a CA file): an agent needs the metadata address to watch for
  // spot notices.
  static const std::set<std::string> kAwsSettings = {"AWS_EC2_METADATA_SERVICE_ENDPOINT",
                                                     "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
                                                     "AWS_EC2_METADATA_DISABLED",
                                                     "AWS_REGION",
                                                     "AWS_DEFAULT_REGION",
                                                     "AWS_CA_BUNDLE"};
  if (name.rfind("AWS_", 0) == 0) return !kAwsSettings.count(name);
  if (name.size() >= 4 && name.compare(name.size() - 4, 4, "_KEY") == 0) return true;
  for (const char* word : {"TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"})
    if (name.find(word) != std::string::npos) return true;
  return false;
}

std::vector<std::string> EnvironmentWithoutSecrets() {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e)
    if (!IsSecretEnvName(*e)) env.emplace_back(*e);
  return env;
}

std::string TakeSecretEnv(const char* name) {
  char* value = std::getenv(name);
  if (!value) return "";
  std::string out = value;
  std::memset(value, 'x', out.size());  // the bytes /proc/PID/environ reads
  ::unsetenv(name);
  return out;
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

namespace {

// Reads exactly `n` bytes unless the writers close first; returns how many.
size_t ReadFull(int fd, void* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, static_cast<char*>(buf) + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

}  // namespace

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
  // pid_pipe carries the grandchild's pid; exec_pipe stays open (CLOEXEC)
  // until the grandchild's execve succeeds, or carries its errno when it
  // fails. The pid is returned only after the exec: before it, the
  // grandchild's /proc cmdline is still ours and ProcessAlive(pid, marker)
  // would call a starting process dead (the lost-at-provisioning race).
  int pid_pipe[2], exec_pipe[2];
  if (::pipe2(pid_pipe, O_CLOEXEC) != 0) {
    ::close(log_fd);
    ::close(null_fd);
    return ErrnoStatus("pipe");
  }
  if (::pipe2(exec_pipe, O_CLOEXEC) != 0) {
    for (int fd : {log_fd, null_fd, pid_pipe[0], pid_pipe[1]}) ::close(fd);
    return ErrnoStatus("pipe");
  }
  pid_t child = ::fork();
  if (child < 0) {
    for (int fd : {log_fd, null_fd, pid_pipe[0], pid_pipe[1], exec_pipe[0], exec_pipe[1]})
      ::close(fd);
    return ErrnoStatus("fork");
  }
  if (child == 0) {
    ::setsid();
    pid_t grandchild = ::fork();
    if (grandchild == 0) {
      ::dup2(null_fd, 0);
      ::dup2(log_fd, 1);
      ::dup2(log_fd, 2);
      ::execve(cargv[0], cargv.data(), cenv.data());
      int err = errno;
      ssize_t ignored = ::write(exec_pipe[1], &err, sizeof(err));
      (void)ignored;
      ::_exit(127);
    }
    ssize_t ignored = ::write(pid_pipe[1], &grandchild, sizeof(grandchild));
    (void)ignored;
    ::_exit(0);
  }
  for (int fd : {pid_pipe[1], exec_pipe[1], log_fd, null_fd}) ::close(fd);
  pid_t grandchild = -1;
  size_t n = ReadFull(pid_pipe[0], &grandchild, sizeof(grandchild));
  ::close(pid_pipe[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  int exec_errno = 0;
  size_t e = ReadFull(exec_pipe[0], &exec_errno, sizeof(exec_errno));  // EOF at the exec
  ::close(exec_pipe[0]);
  if (n != sizeof(grandchild) || grandchild <= 0) return Internal("could not start " + argv[0]);
  if (e == sizeof(exec_errno)) {
    errno = exec_errno;
    return ErrnoStatus("cannot run " + argv[0]);
  }
  return static_cast<int>(grandchild);
}

}  // namespace yard
