// The scenario of the simulated cloud (SimProvider): capacity over time,
// provisioning delay and spot interruptions per machine type.
//
// Scenario (JSON, documented in docs/formats.md):
//   {"version": 1, "types": {"p2.xlarge": {
//       "capacity": [[0, 2], [600, 0]],   // from scenario time t, n instances
//       "provisioning_delay_s": 5,
//       "interruptions": [120],            // times a spot instance is taken
//       "settings": ["zone"]}}}            // keys a job may set (--set zone=b)
// Scenario time is seconds since the provider was created, on the
// controller's clock (a FakeClock in tests).
#pragma once

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace yard {

struct SimTypeScenario {
  std::vector<std::pair<double, int>> capacity;  // sorted by time
  double provisioning_delay_s = 0;
  std::vector<double> interruptions;  // sorted scenario times
  std::set<std::string> settings;     // per-job keys (JobSettingKeys)
  int CapacityAt(double t) const;
};

struct SimScenario {
  std::map<std::string, SimTypeScenario> types;
  // Parses a scenario file's JSON; InvalidArgument saying what is wrong.
  static StatusOr<SimScenario> FromJson(const nlohmann::json& j);
};

}  // namespace yard
