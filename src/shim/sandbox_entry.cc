#include "shim/sandbox_entry.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>

namespace yard {
namespace {

// Exit code of a sandbox that could not be set up (as the shim's own failures).
constexpr int kSetupFailure = 125;

[[noreturn]] void Fail(const char* what, const std::string& path) {
  std::fprintf(stderr, "yard: cannot set up the job's sandbox: %s%s%s: %s\n", what,
               path.empty() ? "" : " ", path.c_str(), std::strerror(errno));
  _exit(kSetupFailure);
}

bool StrictlyUnder(const std::string& path, const std::string& dir) {
  if (dir == "/") return path.size() > 1 && path[0] == '/';
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
         path[dir.size()] == '/';
}

// A mount point as /proc/self/mountinfo writes it: space, tab, newline and
// backslash as \ooo.
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3') {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Every mount point of this mount namespace (field 5 of mountinfo).
std::vector<std::string> MountPoints() {
  std::string text;
  int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  if (fd < 0) Fail("reading", "/proc/self/mountinfo");
  char buf[8192];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
  close(fd);
  std::vector<std::string> points;
  size_t line = 0;
  while (line < text.size()) {
    size_t end = text.find('\n', line);
    if (end == std::string::npos) end = text.size();
    size_t field = line;
    for (int i = 0; i < 4 && field < end; ++i) field = text.find(' ', field) + 1;
    size_t stop = text.find(' ', field);
    if (field > line && stop != std::string::npos && stop < end)
      points.push_back(Unescape(text.substr(field, stop - field)));
    line = end + 1;
  }
  return points;
}

// The mount points of `points` strictly below `dir` that no other one below
// `dir` contains.
std::vector<std::string> TopSubmounts(const std::vector<std::string>& points,
                                      const std::string& dir) {
  std::vector<std::string> below;
  for (const std::string& p : points)
    if (StrictlyUnder(p, dir)) below.push_back(p);
  std::sort(below.begin(), below.end());
  below.erase(std::unique(below.begin(), below.end()), below.end());
  std::vector<std::string> top;
  for (const std::string& p : below)
    if (std::none_of(top.begin(), top.end(),
                     [&](const std::string& t) { return StrictlyUnder(p, t); }))
      top.push_back(p);
  return top;
}

// mkdir -p (0755); the path's last part is a file when `file`.
void MakePath(const std::string& path, bool file) {
  for (size_t slash = path.find('/', 1); slash != std::string::npos;
       slash = path.find('/', slash + 1))
    if (mkdir(path.substr(0, slash).c_str(), 0755) != 0 && errno != EEXIST) Fail("making", path);
  if (file) {
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) Fail("making", path);
    close(fd);
  } else if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    Fail("making", path);
  }
}

// Remounts the mount at `path` read-only, keeping its other flags.
void RemountReadOnly(const std::string& path) {
  struct statvfs st;
  if (statvfs(path.c_str(), &st) != 0) Fail("reading the flags of", path);
  unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY;
  if (st.f_flag & ST_NOSUID) flags |= MS_NOSUID;
  if (st.f_flag & ST_NODEV) flags |= MS_NODEV;
  if (st.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
  if (st.f_flag & ST_NOATIME) flags |= MS_NOATIME;
  if (st.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
  if (st.f_flag & ST_RELATIME) flags |= MS_RELATIME;
  if (mount(nullptr, path.c_str(), nullptr, flags, nullptr) != 0) Fail("making read-only", path);
}

// A new empty tmpfs on `dir` (as bwrap's --tmpfs: mode 0755, nosuid,
// nodev), with the mounts that were below it (binds of the job's folders,
// covers of hidden ones) carried over, each with what is mounted below it.
// `points`: the mount points; this leaves them where they were.
void FreshTmpfs(const std::vector<std::string>& points, const std::string& dir) {
  std::vector<std::string> below = TopSubmounts(points, dir);
  std::vector<int> trees;
  for (const std::string& p : below) {
    int fd = open_tree(AT_FDCWD, p.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (fd < 0) Fail("taking the mount", p);
    trees.push_back(fd);
  }
  if (mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") != 0)
    Fail("mounting a new tmpfs on", dir);
  for (size_t i = 0; i < below.size(); ++i) {
    struct stat st;
    if (fstat(trees[i], &st) != 0) Fail("reading the mount", below[i]);
    MakePath(below[i], !S_ISDIR(st.st_mode));
    if (move_mount(trees[i], "", AT_FDCWD, below[i].c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0)
      Fail("mounting again", below[i]);
    close(trees[i]);
  }
}

// This job's own /proc, with bwrap's read-only covers over the parts that
// reach the kernel or the host (as --proc does, and always).
void FreshProc() {
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
    Fail("mounting", "/proc");
  for (const char* part : {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"}) {
    if (access(part, F_OK) != 0) continue;
    if (mount(part, part, nullptr, MS_BIND | MS_REC, nullptr) != 0) Fail("covering", part);
    RemountReadOnly(part);
  }
}

// No capability left, not even to gain by exec: bounding and ambient sets
// emptied, then the rest; no_new_privs, so setuid programs gain nothing.
void DropCapabilities() {
  for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; ++cap)
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
      Fail("dropping a capability", std::to_string(cap));
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
    Fail("clearing the ambient capabilities", "");
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capset, &header, data) != 0) Fail("dropping the capabilities", "");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) Fail("setting no_new_privs", "");
}

// As pid 1 of the job's PID namespace: reaps whatever is re-parented here
// and exits as the command did (128 + N for signal N, as bwrap's init).
[[noreturn]] void BeInit(pid_t command) {
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid == command) _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    if (pid < 0 && errno != EINTR) Fail("waiting for the command", "");
  }
}

}  // namespace

void RunInSandbox(const SandboxEntry& entry, char** argv, const sigset_t& mask) {
  // The shim outside ends the job; should it die without doing so (SIGKILL),
  // the job goes with it.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) Fail("reading the working folder", "");
  if (setns(entry.mount_ns_fd, CLONE_NEWNS) != 0) Fail("joining the sandbox's mount namespace", "");
  close(entry.mount_ns_fd);
  if (unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS) != 0) Fail("unsharing namespaces", "");
  // Nothing mounted here may reach the template or another job.
  if (mount(nullptr, "/", nullptr, MS_SLAVE | MS_REC, nullptr) != 0) Fail("making / a slave", "");
  FreshProc();  // first: the template's /proc is the holder's, whose processes are gone
  // Read once (the kernel's formatting of it is most of this setup's CPU):
  // making a folder fresh mounts at the same points again.
  std::vector<std::string> points = MountPoints();
  std::vector<std::string> fresh = entry.fresh;
  // A folder before what lies below it ($HOME below /tmp is made after /tmp).
  std::sort(fresh.begin(), fresh.end(),
            [](const std::string& a, const std::string& b) { return a.size() < b.size(); });
  for (const std::string& dir : fresh) FreshTmpfs(points, dir);
  for (const char* shared : {"/", "/dev"})
    if (std::find(points.begin(), points.end(), shared) != points.end()) RemountReadOnly(shared);
  if (chdir(cwd) != 0) Fail("entering", cwd);
  DropCapabilities();
  pid_t command = fork();
  if (command < 0) Fail("starting the command", "");
  if (command == 0) {
    setsid();  // as bwrap's --new-session: no TIOCSTI into a terminal outside
    sigprocmask(SIG_SETMASK, &mask, nullptr);
    execvp(argv[0], argv);
    std::fprintf(stderr, "yard: cannot run '%s': %s\n", argv[0], std::strerror(errno));
    _exit(127);
  }
  BeInit(command);
}

}  // namespace yard
