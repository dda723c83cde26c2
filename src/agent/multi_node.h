// Multi-node jobs: one command run once per node of the Slurm allocation
// the agent lives in (the agent runs on its first node).
//
// The agent runs
//   srun --nodes=N --ntasks=N --ntasks-per-node=1 --label --kill-on-bad-exit=1
//        --export=ALL [bwrap ... --] sh -c RANK_WRAPPER yard-rank COMMAND...
// under its usual shim, so cancel, exit codes and output work as for any
// job. When the agent confines jobs, each rank runs in the job's sandbox
// (sandbox.h), made on its own node by bwrap from the prefix the agent
// computed on the first one (the job folder and the hidden folders are on
// storage every node sees, at the same paths); srun stays outside, since
// it needs the node's munge socket, which a job must not reach. Every node
// then needs bubblewrap; a node without it fails the rank (srun says that
// bwrap could not be executed), never runs it unconfined. The job's environment
// gains MASTER_ADDR (the first node's Slurm NodeAddr), MASTER_PORT, WORLD_SIZE=N and
// YARD_TF_WORKERS (one free port per rank); the wrapper, on each node, adds RANK, NODE_RANK,
// LOCAL_RANK (from SLURM_PROCID, SLURM_NODEID, SLURM_LOCALID) and TF_CONFIG, and points the
// artifact variables of ranks > 0 at <job>/ranks/<rank>/, so that only rank 0's checkpoints, logs
// and outputs are synced. srun's "N: " line labels become "[rank N] " (RankLabeler).
//
// REQUIRES: the job folder is on a filesystem every node sees (the usual
// shared home or scratch of a Slurm cluster).
#pragma once

#include <string>
#include <vector>

#include "agent/job_setup.h"
#include "common/command_runner.h"
#include "common/status.h"

namespace yard {

struct MultiNodeLaunch {
  std::vector<std::string> argv;  // srun ... COMMAND
  EnvMap env;                     // the job's environment plus the rank variables
};

// Builds the launch of `a.command` on `a.nodes` nodes. `env` is the job's
// environment (JobEnvironment); `rank_sandbox` the sandbox prefix (bwrap
// ... "--", SandboxPrefix) each rank runs in, or empty for unconfined
// ranks; `runner` runs scontrol to find the nodes' addresses.
// FailedPrecondition when the agent is not in a Slurm allocation of at
// least a.nodes nodes.
StatusOr<MultiNodeLaunch> PrepareMultiNode(const Assignment& a, const EnvMap& env,
                                           const JobPaths& paths,
                                           const std::vector<std::string>& rank_sandbox,
                                           CommandRunner* runner);

// Rewrites the line labels of `srun --label` ("1: text", the number
// right-aligned) into "[rank 1] text", across chunk boundaries. Lines
// without a label (srun's own messages) pass unchanged. Not thread-safe.
class RankLabeler {
 public:
  // Returns what can be passed on now; `last` flushes everything held.
  std::string Add(const std::string& data, bool last);

 private:
  std::string held_;  // the start of a line whose label is not complete yet
  bool at_line_start_ = true;
};

}  // namespace yard
