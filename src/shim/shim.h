// The job shim: the small supervisor between the agent and a job's command
// (see agent/job_process.h for what it guarantees). It is built twice: as
// the `yard-shim` executable (src/shim/main.cc, linked statically with libc
// only, so that starting it per job costs little more than a fork) and as
// `yard shim`, the fallback the agent uses when no yard-shim sits beside
// `yard`.
#pragma once

namespace yard {

// Entry point of `yard-shim [--grace-ms N] [--parent-pid P] [--sandboxed]
// -- ARGV...` (and of `yard shim ...`, with argv[0] "shim"). With
// --sandboxed, ARGV starts a sandbox (agent/sandbox.h) whose process group
// is left out of the SIGTERM round (bwrap passes no signal on, and the
// command's own processes get theirs directly; SIGKILL still reaches all),
// and its exit code 128 + N reads as death by signal N. `yard-shim --exec
// -- ARGV` only execs ARGV, failing as below (127); the sandbox runs it.
// With --enter-sandbox FD [--fresh DIR]..., FD is a prepared sandbox's
// mount namespace (agent/sandbox_template.h): the command runs under an
// init of its own in a copy of it (shim/sandbox_entry.h), treated as
// --sandboxed. `yard-shim --hold` says "ready" and stays until its stdin
// closes: the template's holder. `yard-shim --zygote AGENT_PID` forks the
// agent's shims (shim/zygote.h).
// ARGV[0] is looked up on the
// PATH of the shim's own environment, i.e. the job's. Returns the process
// exit code: the command's exit code; 127 if it could not be exec'd; 2 for
// bad usage; 125 if the shim itself failed; 128+SIGTERM if the agent was
// gone before the command started. When a signal killed the command the
// shim kills itself with that signal instead of returning (falling back to
// returning 128 + signal).
int RunShim(int argc, char** argv);

// Exit code of the shim (and of a shim the zygote forked) when it fails
// itself, as env(1) and timeout(1) do.
constexpr int kShimFailure = 125;

}  // namespace yard
