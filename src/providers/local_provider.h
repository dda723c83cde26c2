// LocalProvider: instances are `yard agent` processes on this host, each
// pinned to its own slice of the cores (sched_setaffinity, inherited by the
// job) and given its own GPUs through CUDA_VISIBLE_DEVICES.
//
// Agents are started and stopped through an AgentSpawner (the real one starts
// them detached: their own session, re-parented to init, so they outlive a
// server crash; a restarted server adopts them again).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/thread_annotations.h"
#include "providers/agent_spawner.h"
#include "providers/provider.h"

namespace yard {

class LocalProvider : public Provider {
 public:
  // `state_dir`: where instance folders and logs go. `cores`/`gpus`: what
  // this host offers (see DetectHostCores, DetectGpus). `spawner` starts and
  // stops the agents; not owned, must outlive this.
  LocalProvider(std::string state_dir, int cores, int gpus, AgentSpawner* spawner);

  std::string name() const override { return "local"; }
  int Available(const MachineType& type) override;
  // True when this host has the cores and GPUs of `type` at all.
  bool CapacityComesBack(const MachineType& type) const override;
  Status Launch(const MachineType& type, const AgentLaunchInfo& agent,
                InstanceRecord* inst) override;
  Status Terminate(const InstanceRecord& inst) override;
  bool IsAlive(const InstanceRecord& inst) override;
  bool Adopt(const InstanceRecord& inst) override;
  // What the server holds of each attempt, for ClearInstanceFolder. Set
  // once, before the first Terminate.
  void SetSpoolDelivered(SpoolDelivered delivered) { delivered_ = std::move(delivered); }

 private:
  // Picks `n` free indices of `used` below `total`. REQUIRES: mu_ held.
  static std::vector<int> PickFree(const std::set<int>& used, int total, int n);
  void Release(const std::string& instance_id);
  // Folders of ended instances (not held now) that have a spool/.
  std::vector<std::string> EndedFolders();

  const std::string state_dir_;
  const int cores_;
  const int gpus_;
  AgentSpawner* const spawner_;
  Mutex mu_;
  std::set<int> used_cores_ GUARDED_BY(mu_);
  std::set<int> used_gpus_ GUARDED_BY(mu_);
  std::map<std::string, std::pair<std::vector<int>, std::vector<int>>> held_ GUARDED_BY(mu_);
  SpoolDelivered delivered_;
};

// Empties an ended instance's folder (its job folders, chunk cache, Python
// environments) but keeps agent.log for a look afterwards. Of spool/, it
// removes the files (version 2) whose every record `delivered` says the
// server holds, however big the acknowledged part (a job's whole output),
// and spool/ itself once empty; a file with records the server lacks stays
// whole (a later agent started on the folder would send them). Without
// `delivered`, spool/ is kept. Everything removed is either on the server
// already or a cache that only this instance could use. Call only once the
// agent is gone.
void ClearInstanceFolder(const std::string& dir, const SpoolDelivered& delivered = nullptr);

// Removes the files of the folder `spool` whose every record `delivered`
// says the server holds, then `spool` if that leaves it empty.
void ClearDeliveredSpool(const std::string& spool, const SpoolDelivered& delivered);

// The job, attempt and number of records of a version-2 spool file
// (agent/event_spool.h); nullopt when it is not one.
struct SpoolFileInfo {
  std::string job;
  int64_t attempt = 0;
  int64_t records = 0;
};
std::optional<SpoolFileInfo> ReadSpoolFileInfo(const std::string& path);

// Cores this process may run on (sched_getaffinity).
int DetectHostCores();
// GPUs listed by `nvidia-smi -L` (0 when it is absent or fails).
int DetectGpus();

}  // namespace yard
