// SimProvider: a simulated cloud for testing capacity, fallback, cooling and
// preemption. The cloud's API is simulated from a scenario file; its
// instances are real local agents, so jobs really run. The scenario file is
// read by providers/sim_scenario.h.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/thread_annotations.h"
#include "providers/agent_spawner.h"
#include "providers/provider.h"
#include "providers/sim_scenario.h"

namespace yard {

class SimProvider : public Provider {
 public:
  // In each instance's folder: what the simulated cloud keeps of its launch
  // (as a cloud keeps an instance's user-data), so that a restarted server
  // can still start or adopt an instance whose agent had not registered:
  // {"agent": {server_url, server_url_file, agent_token, yard_binary,
  // server_fingerprint}, "ready_at" (wall time the agent starts), "pid"
  // (once started)}. 0600, beside the agent's own credential, hidden from
  // jobs like the rest of YARD_HOME; its bootstrap is spent once the agent
  // has registered.
  static constexpr char kLaunchRecordFile[] = "sim-launch.json";

  SimProvider(SimScenario scenario, std::string state_dir, const Clock* clock,
              AgentSpawner* spawner);

  std::string name() const override { return "sim"; }
  std::set<std::string> JobSettingKeys(const MachineType& type) const override;
  int Available(const MachineType& type) override;
  Status Launch(const MachineType& type, const AgentLaunchInfo& agent,
                InstanceRecord* inst) override;
  Status Terminate(const InstanceRecord& inst) override;
  bool IsAlive(const InstanceRecord& inst) override;
  // Adopts an instance found in the store after a server restart:
  //   - registered: by the pid KnownInfo gave then, if that agent still runs;
  //   - not registered yet: by its launch record (kLaunchRecordFile in its
  //     folder): an agent started already goes on if it still runs (it
  //     registers with its bootstrap, whose hash the store kept); one not
  //     started yet is started when its provisioning delay ends, as the
  //     server before would have.
  // False (the server marks it lost) when its agent is gone or its launch
  // record is missing or unreadable. An adopted instance that never
  // registers is reclaimed by the controller's provisioning timeout.
  bool Adopt(const InstanceRecord& inst) override;
  // {"pid": P} once the instance's agent runs: stored when it registers.
  nlohmann::json KnownInfo(const InstanceRecord& inst) override;
  void Tick(double now) override;
  std::vector<Interruption> TakeInterruptions() override;

  // Takes `instance_id` away now, as a spot interruption would.
  Status InterruptNow(const std::string& instance_id, const std::string& reason);
  // How many times Launch granted an instance (for tests and benchmarks).
  int launches() const { return launches_; }
  // The options (catalog options merged with the job's settings) that
  // `instance_id` was launched with; null when unknown (for tests).
  nlohmann::json LaunchedOptions(const std::string& instance_id);

 private:
  struct SimInstance {
    std::string type;
    bool spot = false;
    double ready_at = 0;       // scenario clock time the agent starts
    double ready_at_wall = 0;  // the same, as clock_->Now() time (kept across restarts)
    int handle = 0;            // 0 until the agent is started
    AgentLaunchInfo agent;
    std::string dir;
    nlohmann::json options;  // the type's options as launched
  };
  double ScenarioTime() const { return clock_->Now() - t0_; }
  // By value: callers pass keys of the map entry this erases. REQUIRES: mu_
  void InterruptLocked(std::string id, const std::string& reason) REQUIRES(mu_);
  // Writes s's launch record into its folder (logged, not fatal: the
  // instance then cannot be adopted before it registers, as before).
  void KeepLaunchRecord(const std::string& id, const SimInstance& s) REQUIRES(mu_);
  // The instance an unregistered `inst` was, from its launch record;
  // nullopt when it cannot be adopted (see Adopt).
  std::optional<SimInstance> FromLaunchRecord(const InstanceRecord& inst);

  const SimScenario scenario_;
  const std::string state_dir_;
  const Clock* const clock_;
  AgentSpawner* const spawner_;
  const double t0_;
  Mutex mu_;
  std::map<std::string, SimInstance> instances_ GUARDED_BY(mu_);
  std::map<std::string, int> live_by_type_ GUARDED_BY(mu_);
  std::map<std::string, size_t> next_interruption_ GUARDED_BY(mu_);  // per type
  std::vector<Interruption> interrupted_ GUARDED_BY(mu_);
  int launches_ = 0;
};

}  // namespace yard
