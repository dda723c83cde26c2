// AgentCredentials: who an agent is, and what it may touch right now.
//
// Each instance has its own two secrets; the store keeps only their SHA-256
// (InstanceRecord::bootstrap_hash, credential_hash), so they survive a
// server restart, and they die with the instance (terminated or lost):
//   bootstrap   "yab_" + 48 hex, minted by the controller for each launch and
//               handed to the provider (AgentLaunchInfo::agent_token), which
//               passes it to the agent however it can (environment, stdin,
//               sbatch environment, EC2 user-data). It opens only the routes
//               an agent needs before it has registered (Access::kAgentOrBootstrap:
//               POST /v1/agents/register, agent binaries), for its instance.
//   credential  "yit_" + 48 hex, chosen by the agent (random, kept 0600 in its
//               folder) and sent with the bootstrap at its first register,
//               which binds it to the instance. From then on the bootstrap
//               registers nothing else: whoever reads it later (user-data,
//               the agent's environment) holds a spent secret. A register
//               repeated with the same bootstrap and credential (a lost reply,
//               a restarted agent) is accepted; with another credential it
//               is refused.
// The credential opens the agent routes of its own instance only; records
// only for the job attempt assigned to that instance now (the controller
// checks); chunk reads only of that attempt's bundle and checkpoint to
// resume from (SetJobChunks); chunk writes only while it has a job.
//
// Every check is a hash and a lookup in memory. Thread-safe: an own mutex,
// never held while calling out, so the HTTP layer asks without taking the
// controller's lock.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "common/thread_annotations.h"
#include "store/records.h"

namespace yard {

class AgentCredentials {
 public:
  using ChunkSet = std::unordered_set<std::string>;

  // A new bootstrap credential (plaintext; store only its Hash).
  static std::string NewBootstrap();
  // A new instance credential, as an agent makes one.
  static std::string NewCredential();
  // True for strings shaped like either kind (prefix and 48 lower-case hex).
  static bool IsBootstrap(const std::string& token);
  static bool IsCredential(const std::string& token);
  static std::string Hash(const std::string& token);

  // Indexes (or re-indexes) `inst`'s hashes and user. Its job chunks are
  // kept when `job_key` is unchanged, else cleared (see SetJobChunks).
  void Put(const InstanceRecord& inst, const std::string& job_key);
  // Forgets the instance: its credentials open nothing from now on.
  void Remove(const std::string& instance_id);
  // The caller behind `token`: kind "bootstrap" or "agent", the instance and
  // its user. nullopt for an unknown token (or one of an ended instance).
  std::optional<TokenInfo> Identify(const std::string& token) const;

  // The chunks the instance may read for its current job attempt, known by
  // `job_key` (job id and attempt); "" with an empty set: no job.
  void SetJobChunks(const std::string& instance_id, const std::string& job_key, ChunkSet chunks);
  // The job key the chunks were set for ("" when none or unknown instance).
  std::string JobKey(const std::string& instance_id) const;
  bool MayRead(const std::string& instance_id, const std::string& hash) const;
  // True while the instance has a job (its agent uploads the job's artifacts).
  bool HasJob(const std::string& instance_id) const;

 private:
  struct Entry {
    std::string user;
    std::string bootstrap_hash, credential_hash;
    std::string job_key;
    std::shared_ptr<const ChunkSet> chunks;
  };
  void Unindex(const Entry& e) REQUIRES(mu_);

  mutable Mutex mu_;
  std::unordered_map<std::string, Entry> by_instance_ GUARDED_BY(mu_);
  // hash -> instance id, for both kinds.
  std::unordered_map<std::string, std::string> bootstraps_ GUARDED_BY(mu_);
  std::unordered_map<std::string, std::string> credentials_ GUARDED_BY(mu_);
};

// The chunk hashes an instance fetches for `job`'s current attempt: those of
// its bundle and of sched.resume_from (entry and siblings). Only fields the
// server checked or wrote itself: the bundle's chunks are the user's own
// (SubmitJob verified it), resume_from comes from the job's own artifacts.
AgentCredentials::ChunkSet JobChunks(const JobRecord& job);

}  // namespace yard
