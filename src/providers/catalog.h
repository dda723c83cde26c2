// The machine catalog: the types users can ask for. The file format is in
// docs/formats.md ("Machine catalog").
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace yard {

struct MachineType {
  std::string name;      // "local", "p2.xlarge"
  std::string provider;  // "local", "sim", "ssh", "slurm"
  int cpus = 1;
  double memory_gb = 0;
  int gpus = 0;
  std::string gpu_model;
  double spot_price = 0;                              // per hour
  double on_demand_price = 0;                         // per hour
  std::string default_market = "on-demand";           // or "spot"
  nlohmann::json options = nlohmann::json::object();  // provider-specific (partition, hosts...)

  nlohmann::json ToJson() const;
  // This type as a job with provider `settings` ({KEY: VALUE}, see
  // Provider::JobSettingKeys) gets it: each setting replaces or adds the
  // option of the same key.
  MachineType WithSettings(const nlohmann::json& settings) const;
};

class Catalog {
 public:
  // The built-in catalog of the local provider for a host with `cores`
  // cores and `gpus` GPUs: `local` (the whole host) and `local-Ncpu` slices.
  static Catalog BuiltinLocal(int cores, int gpus);
  // Parses a catalog file (JSON, versioned).
  static StatusOr<Catalog> FromJson(const nlohmann::json& j);

  // Adds the types of `other`, replacing same-named ones.
  void Merge(const Catalog& other);
  const MachineType* Find(const std::string& name) const;
  const std::vector<MachineType>& types() const { return types_; }
  std::string NamesForHelp() const;  // "local, local-1cpu, ..."
  nlohmann::json ToJson() const;

 private:
  std::vector<MachineType> types_;
};

// A machine id as users write it: "p2.xlarge" or "p2.xlarge:spot".
struct MachineRequest {
  std::string type;
  std::string market;  // "" = the type's default
};
StatusOr<MachineRequest> ParseMachineRequest(const std::string& id);

}  // namespace yard
