// The shim's zygote: one `yard-shim --zygote AGENT_PID` per agent that
// forks each job's shim instead of the agent exec'ing a new one per job
// (agent/shim_zygote.h is the agent's side). libc only, like the rest of
// src/shim.
//
// Why: exec'ing yard-shim (the kernel's exec, the static binary's start-up,
// glibc's probing of the CPU) was ≈ 0.3–0.5 ms of the ≈ 1.1 ms that
// starting a shim and `true` costs per job (bench/README.md, "Dispatch: one
// shim zygote per agent"); a fork of the small zygote costs less.
//
// Protocol, on a SOCK_SEQPACKET socket on descriptor 3 (kZygoteSocketFd):
//   request: one message of NUL-terminated strings — the number of argv
//     strings, the number of environment strings, which descriptors follow
//     ("o" output, "i" input, "n" a sandbox's mount namespace, in that
//     order), the argv (as for RunShim), the environment, the working
//     folder — with those descriptors attached (SCM_RIGHTS).
//   answer: an int32, the new shim's pid, or minus the errno of a start
//     that failed (chdir into the working folder, fork); with a pid, the
//     write end of the shim's "go" pipe attached.
// The shim is forked with CLONE_PARENT: it is the agent's child, not the
// zygote's, so the agent waits for it, signals it and is told of its exit
// exactly as when it spawned it itself, and the shim's parent-death signal
// follows the agent. It starts only when the agent writes a byte to its go
// pipe: should the zygote die between the fork and the answer, the shim
// reads EOF there and exits without starting anything, so a job never runs
// unknown to the agent (which then starts it again through a new zygote).
// Then the shim puts the descriptors on 0 (input, or /dev/null), 1 and 2
// (output) and 3 (the namespace), closes every other one, takes the
// environment and runs RunShim(argv) as a freshly exec'd yard-shim would.
// The zygote ends when the agent closes its end of the socket, and with the
// agent (parent-death signal SIGKILL).
#pragma once

#include <sys/types.h>

#include <vector>

namespace yard {

// The descriptor the zygote finds its socket on.
inline constexpr int kZygoteSocketFd = 3;
// Largest request (argv and environment together).
inline constexpr int kZygoteMaxRequest = 256 * 1024;

// Most descriptors one message of the protocol carries (a request's output,
// input and namespace; an answer's go pipe).
inline constexpr int kZygoteMaxFds = 3;

// One message from `sock` into buf[0, size) — both sides of the protocol
// read this way. Appends the descriptors it carried (close-on-exec) to
// `fds`; *truncated tells whether the message or its descriptors did not
// fit. Returns recvmsg's result, retried on EINTR (0: the peer closed).
ssize_t ReceiveWithFds(int sock, void* buf, size_t size, std::vector<int>* fds, bool* truncated);

// `yard-shim --zygote AGENT_PID`. Returns the exit code: 0 when the agent
// closed the socket; 125 when AGENT_PID was not its parent (the agent was
// gone) or the socket is not there.
int RunZygote(pid_t agent_pid);

}  // namespace yard
