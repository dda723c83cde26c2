#include "shim/proc_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <set>
#include <unordered_map>

namespace yard {
namespace {

// Parses /proc/<pid>/stat. The command name (field 2) may hold spaces and
// parentheses, so the fields are read after the last ')'.
std::optional<ProcEntry> ReadProcStat(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;  // it exited while we walked
  char buf[512];                    // the name is at most 16 bytes: the fields we need fit
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

}  // namespace

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

std::vector<pid_t> ListDescendants(pid_t root) {
  std::vector<pid_t> pids;
  for (const ProcEntry& p : DescendantEntries(root)) pids.push_back(p.pid);
  return pids;
}

void SignalProcessAndGroup(const ProcEntry& p, int sig) {
  kill(p.pid, sig);
  if (p.pgid > 1 && p.pgid != getpgrp()) kill(-p.pgid, sig);
}

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

}  // namespace yard
