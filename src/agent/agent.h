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

#include "agent/preemption_watcher.h"
#include "client/http_client.h"
#include "common/status.h"

namespace yard {

struct AgentConfig {
  UrlResolver server;         // re-asked on every reconnect
  std::string token;          // agent token
  std::string instance_id;    // given by the provider that started us
  std::string work_dir;       // owned by this agent: jobs/, chunks/, spool/
  std::string yard_binary;    // path of `yard`, used as the job shim
  // Added to every job's environment (e.g. CUDA_VISIBLE_DEVICES).
  std::map<std::string, std::string> job_env;
  Json resources = Json::object();  // reported at registration
  std::chrono::milliseconds artifact_scan_interval{200};
  std::chrono::milliseconds kill_grace{5000};
  PreemptionOptions preemption;  // off unless enabled
};

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
