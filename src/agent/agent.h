// The agent: runs on each instance, dials the controller (never the
// reverse), takes one job at a time and reports everything it produces.
//
//   register -> loop { long-poll work; heartbeat every heartbeat_s }
//   assign   -> fetch bundle chunks (cached by hash) -> materialize ->
//               run through JobProcess -> stream output, metrics, artifacts
//               -> final artifact sync -> exit record
//   cancel   -> terminate the job's whole process tree
//
// Every record of a job goes to an on-disk spool before it is sent and is
// retried until the server acknowledges it, so neither a server restart nor
// a network failure loses output. See docs/api.md ("Agents").
//
// With preemption watching on (AgentConfig::preemption; the variables are
// listed in agent/preemption_watcher.h), a spot interruption notice from
// the instance metadata service is passed to the job (YARD_PREEMPTION_NOTICE
// and SIGUSR1), the job is given until the notice's time minus a margin to
// checkpoint and exit, its records are delivered, and the agent reports the
// instance preempted (POST /v1/agents/{id}/preempted) and stops; the
// server requeues the job at once.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/preemption_watcher.h"
#include "client/http_client.h"
#include "common/command_runner.h"
#include "common/status.h"

namespace yard {

struct AgentConfig {
  UrlResolver server;  // re-asked on every reconnect
  TlsTrust tls;        // how an https:// server is trusted (client/tls_trust.h)
  std::string token;   // this instance's credential (LoadOrCreateCredential)
  // The instance's single-use bootstrap credential, presented with `token`
  // at register (which binds `token` to the instance); "" when `token` is
  // bound already. See server/agent_credentials.h.
  std::string bootstrap_token;
  std::string instance_id;  // given by the provider that started us
  std::string work_dir;     // owned by this agent: jobs/, chunks/, spool/
  std::string yard_binary;  // path of `yard`, used as the job shim
  // Added to every job's environment (e.g. CUDA_VISIBLE_DEVICES).
  std::map<std::string, std::string> job_env;
  Json resources = Json::object();  // reported at registration
  // Confine jobs (sandbox.h): set for local instances, which share the
  // machine with the server, and on SSH hosts, EC2 instances and Slurm
  // nodes that can (`yard agent --sandbox-if-possible`); on Slurm, each
  // rank of a multi-node job too (multi_node.h). `sandbox_hidden` (e.g. YARD_HOME) is never
  // visible to a job; the agent's own folder never is either.
  bool sandbox = false;
  std::vector<std::string> sandbox_hidden;
  bool sandbox_show_host = false;  // SandboxSpec::show_host (SSH hosts, Slurm nodes: their data)
  // Why jobs run unconfined though confinement was asked for where
  // possible (CheckSandboxWorks); each job is told so. "" otherwise.
  std::string unconfined_reason;
  // The server's blob store when this agent runs on the server's machine
  // (local and sim instances): bundle chunks there are copied into job
  // folders instead of fetched (chunk_cache.h). "" elsewhere.
  std::string server_blobs;
  std::chrono::milliseconds artifact_scan_interval{200};
  std::chrono::milliseconds kill_grace{5000};
  PreemptionOptions preemption;  // off unless enabled
  // Runs the tools a job needs (pip, podman, scontrol) for every job
  // (JobContext::commands); null: real processes. Tests pass a fake
  // (common/fake_command_runner.h).
  CommandRunner* commands = nullptr;
};

// The agent's own credential for the instance whose folder is `work_dir`:
// read from work_dir/credential, or made (random "yit_" + 48 hex) and
// written there (0600) before it is first sent, so that a restarted agent
// presents the same one.
StatusOr<std::string> LoadOrCreateCredential(const std::string& work_dir);

class Agent {
 public:
  explicit Agent(AgentConfig config);
  ~Agent();

  // Registers and serves until the server says terminate or Stop() is
  // called. Retries transient failures forever; returns an error only for
  // permanent ones (bad token, unknown instance).
  Status Run();
  // Thread-safe; makes Run return soon (a running job is terminated).
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace yard
