// Entering a prepared sandbox (agent/sandbox_template.h) instead of
// building one with bubblewrap per job. libc only, like the rest of src/shim.
//
// The agent builds the sandbox's mount namespace once with bwrap (the
// "template": the same mounts a per-job bwrap makes) and hands the shim a
// descriptor of it. Per job, the shim (outside) unshares a new PID namespace
// and forks the job's init, which runs RunInSandbox: it joins a private
// copy of the template's mount namespace and new IPC and UTS namespaces,
// puts a fresh /proc (this job's processes only) and fresh empty tmpfs over
// every tmpfs of the template (/tmp, /var/tmp, $HOME, /dev/shm, the covers
// of hidden folders: nothing a job writes there reaches a later job),
// makes / and /dev read-only (they are the template's, shared), drops every
// capability (bounding set included) and sets no_new_privs, then forks the
// command in a session of its own and waits for it as the PID namespace's
// init, as bwrap's init does: when the command exits, init exits with its
// status (128 + N for signal N) and the kernel kills what is left inside.
// Needs CAP_SYS_ADMIN (the agent runs as root); the agent uses bwrap per
// job otherwise.
#pragma once

#include <signal.h>

#include <string>
#include <vector>

namespace yard {

struct SandboxEntry {
  int mount_ns_fd = -1;            // the template's mount namespace
  std::vector<std::string> fresh;  // tmpfs mount points made anew per job
};

// Runs in the job's init (pid 1 of its new PID namespace), never returns:
// sets the sandbox up as above in `cwd`, then runs `argv` (looked up on
// PATH) with signal mask `mask`. A failure to set up is said on stderr and
// exits 125; a command that cannot be exec'd exits 127 with the shim's words.
[[noreturn]] void RunInSandbox(const SandboxEntry& entry, char** argv, const sigset_t& mask);

}  // namespace yard
