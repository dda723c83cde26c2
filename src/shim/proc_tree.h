// The process tree under a pid, read from /proc, and signalling it. Used by
// the job shim (to end what a job left behind) and by the agent (to end a
// job whose shim it must kill). Needs libc only, like the rest of src/shim.
#pragma once

#include <sys/types.h>

#include <optional>
#include <vector>

namespace yard {

struct ProcEntry {
  pid_t pid = 0;
  pid_t ppid = 0;
  pid_t pgid = 0;
};

// A whole string of decimal digits as a number >= 0, or nullopt.
std::optional<long long> ParseCount(const char* s);
// A whole string of decimal digits as a pid (1 .. INT32_MAX), or nullopt.
std::optional<pid_t> ParsePid(const char* s);

// Descendants of `root` found by walking /proc, breadth first (children
// before grandchildren), zombies included. A snapshot: processes may come
// and go while it is taken. Costs one open/read/close per process on the host.
std::vector<ProcEntry> DescendantEntries(pid_t root);

// The pids of DescendantEntries(root). Exposed for tests.
std::vector<pid_t> ListDescendants(pid_t root);

// Sends `sig` to `p` and to its process group, never to the caller's own
// group (a shim shares the agent's, and a job could join it with setpgid).
void SignalProcessAndGroup(const ProcEntry& p, int sig);

// SIGKILLs the descendants of `root` until a walk finds nobody new: a child
// forked while we walked is caught by the next walk, and a parent with
// SIGKILL pending cannot complete a fork, so this ends.
void KillDescendants(pid_t root);

}  // namespace yard
