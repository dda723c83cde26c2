// Provider: turns a machine type into instances running `yard agent`.
//
// The scheduler owns instance state (in the store); a provider only starts
// and stops the machines behind it and says whether one still exists.
// Implementations: local (agent processes on this host); sim, ssh and slurm
// follow the same interface.
#pragma once

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "providers/catalog.h"
#include "store/records.h"

namespace yard {

// What an agent needs to reach the controller. The controller makes one per
// launch.
struct AgentLaunchInfo {
  std::string server_url;       // where agents dial
  std::string server_url_file;  // if set, agents re-read the URL from it (local only)
  // This instance's bootstrap credential ("yab_..."): single-use, good only
  // for registering this one instance, where the agent exchanges it for a
  // credential of its own (server/agent_credentials.h). Hand it to the agent
  // as YARD_AGENT_TOKEN by whatever channel the machine offers (environment,
  // stdin, sbatch environment, cloud user-data). Any process there may read
  // it later: by then it is spent. Never put it in a job's environment.
  std::string agent_token;
  std::string yard_binary;  // path of the `yard` executable to run
  // The SHA-256 fingerprint of the server's TLS certificate ("" for plain
  // HTTP): hand it to the agent beside its token, as
  // YARD_SERVER_FINGERPRINT, so that it trusts the server by it
  // (client/tls_trust.h). Public: it may go anywhere the URL goes.
  std::string server_fingerprint;
};

// The agent's environment entries for `agent`'s TLS trust:
// {"YARD_SERVER_FINGERPRINT=..."}, or none for a plain-HTTP server.
inline std::vector<std::string> AgentTlsEnvironment(const AgentLaunchInfo& agent) {
  if (agent.server_fingerprint.empty()) return {};
  return {"YARD_SERVER_FINGERPRINT=" + agent.server_fingerprint};
}

// Sets AgentTlsEnvironment(agent) in `env` (a copy of the server's
// environment), dropping any YARD_SERVER_FINGERPRINT it had: the agent
// trusts this server's certificate, never one its operator pinned elsewhere.
inline void SetAgentTlsEnvironment(const AgentLaunchInfo& agent, std::vector<std::string>* env) {
  std::erase_if(*env,
                [](const std::string& e) { return e.rfind("YARD_SERVER_FINGERPRINT=", 0) == 0; });
  for (std::string& e : AgentTlsEnvironment(agent)) env->push_back(std::move(e));
}

// An instance the provider took away (a spot interruption, a failed node).
struct Interruption {
  std::string instance_id;
  std::string reason;
};

// What became of a launch whose grant comes later (Provider::GrantsLater).
struct LaunchOutcome {
  enum class Kind {
    kGranted,  // the machine exists (EC2: "running"): provisioning from now on
    kRefused,  // no machine this time (a capacity answer): the attempt fails
               // and the job's next machine id is tried
    kFatal,    // refused for a reason no other type fixes (credentials, a
               // missing permission, a bad image): the job fails at once
  };
  std::string instance_id;
  Kind kind = Kind::kGranted;
  std::string message;                             // the cloud's own words
  nlohmann::json info = nlohmann::json::object();  // merged into the instance's info
};

// How many records of attempt `attempt` of job `job` the server holds or
// will never take again; -1 when it cannot tell (the spool is then kept).
// What the local and ssh providers ask before removing an ended instance's
// spool files.
using SpoolDelivered = std::function<int64_t(const std::string& job, int64_t attempt)>;

class Provider {
 public:
  virtual ~Provider() = default;
  virtual std::string name() const = 0;

  // The keys a job may set for `type` (`yard fit --set KEY=VALUE`, the
  // spec's "settings"). The controller refuses a job with any other key
  // before requesting a machine; the values, merged over type.options, come
  // back as the `type` of Available and Launch. Default: none.
  virtual std::set<std::string> JobSettingKeys(const MachineType& type) const { return {}; }
  // How many more instances of `type` could be granted right now.
  virtual int Available(const MachineType& type) = 0;
  // True when missing capacity for `type` is only held by instances (this
  // server's own) and comes back when they end, as on the local host; false
  // when it may never come (a cloud's). The controller lets a job wait for
  // held capacity on its last machine id instead of failing it. Default false.
  virtual bool CapacityComesBack(const MachineType& type) const { return false; }
  // Starts an instance for `inst` (id, type already set). Fills inst->info
  // with what Terminate/IsAlive need. ResourceExhausted when no capacity.
  // When GrantsLater(), Launch only sends the request (it must not wait on
  // the cloud): the instance is "requested" until its LaunchOutcome comes
  // through TakeLaunchOutcomes, and the job's wait_request_s runs meanwhile;
  // when it runs out first, the controller calls Terminate.
  virtual Status Launch(const MachineType& type, const AgentLaunchInfo& agent,
                        InstanceRecord* inst) = 0;
  // True for providers whose Launch returns before the machine is granted
  // (a cloud API whose instance must first leave "pending"). Default: false,
  // a successful Launch is the grant.
  virtual bool GrantsLater() const { return false; }
  // Outcomes of requested launches since the last call (each reported once).
  virtual std::vector<LaunchOutcome> TakeLaunchOutcomes() { return {}; }
  // Ends the instance (its agent and anything it runs). Idempotent.
  virtual Status Terminate(const InstanceRecord& inst) = 0;
  // False once the machine behind `inst` is known to be gone.
  virtual bool IsAlive(const InstanceRecord& inst) = 0;
  // Re-adopts an instance found in the store after a server restart
  // (e.g. to account its resources). Returns IsAlive.
  virtual bool Adopt(const InstanceRecord& inst) = 0;
  // Called on every scheduler pass with the controller's clock: a chance to
  // finish provisioning or to simulate events. Default: nothing.
  virtual void Tick(double now) {}
  // Instances taken away since the last call (each reported once).
  virtual std::vector<Interruption> TakeInterruptions() { return {}; }
  // The spot price per hour the provider knows for `inst` (a cloud's
  // current price in its zone), used when the catalog gives none. Called
  // with the controller's lock held: answer from memory. Default: none.
  virtual std::optional<double> SpotPricePerHour(const InstanceRecord& inst) {
    return std::nullopt;
  }
  // The heartbeat silence the controller counts against `inst` (lost past
  // heartbeat_timeout_s), `silent_s` being the time since its agent's last
  // heartbeat: a provider that knows the agent's way to the server is down
  // for a while (the AWS tunnel mode's reverse tunnel being made again)
  // counts less. Called with the controller's lock held. Default: silent_s.
  virtual double CountedSilence(const InstanceRecord& inst, double silent_s) { return silent_s; }
  // What the provider already knows of an instance that its LaunchOutcome
  // (if any) has not reported yet (a cloud's instance id, its zone and
  // addresses; the pid of a simulated machine's agent), merged into the
  // instance's info when its agent registers: the record must name what
  // Adopt needs before the server can be restarted. Called with the
  // controller's lock held: answer from memory. Default: nothing.
  virtual nlohmann::json KnownInfo(const InstanceRecord& inst) { return nlohmann::json::object(); }
};

}  // namespace yard
