#include "providers/sim_scenario.h"

#include <algorithm>
#include <limits>

namespace yard {

using Json = nlohmann::json;

int SimTypeScenario::CapacityAt(double t) const {
  int cap = 0;
  for (const auto& [from, n] : capacity)
    if (from <= t) cap = n;
  return cap;
}

namespace {

// One type's scenario. Json::exception for a field of the wrong type;
// InvalidArgument for a capacity count that is not a whole number an int
// holds (casting 1e300 would be undefined).
StatusOr<SimTypeScenario> TypeScenarioFromJson(const Json& t) {
  SimTypeScenario ts;
  for (const auto& step : t.value("capacity", Json::array({Json::array({0, 1000})}))) {
    const Json& n = step.at(1);
    if (!n.is_number_integer() || n < 0 || n > std::numeric_limits<int>::max())
      return InvalidArgument("a capacity step's count must be a whole number >= 0, not " +
                             n.dump());
    ts.capacity.emplace_back(step.at(0).get<double>(), n.get<int>());
  }
  std::sort(ts.capacity.begin(), ts.capacity.end());
  ts.provisioning_delay_s = t.value("provisioning_delay_s", 0.0);
  ts.interruptions = t.value("interruptions", std::vector<double>{});
  std::sort(ts.interruptions.begin(), ts.interruptions.end());
  ts.settings = t.value("settings", std::set<std::string>{});
  return ts;
}

}  // namespace

StatusOr<SimScenario> SimScenario::FromJson(const Json& j) {
  // A "version" that is not a number must not reach value<int>, which throws.
  if (!j.is_object() || !j.contains("version") || j["version"] != 1 || !j.contains("types") ||
      !j["types"].is_object())
    return InvalidArgument("sim scenario: expected {\"version\": 1, \"types\": {...}}");
  SimScenario s;
  try {
    for (const auto& [name, t] : j["types"].items()) {
      StatusOr<SimTypeScenario> ts = TypeScenarioFromJson(t);
      if (!ts.ok())
        return InvalidArgument("sim scenario: type '" + name + "': " + ts.status().message());
      s.types[name] = std::move(*ts);
    }
  } catch (const Json::exception& e) {
    return InvalidArgument(std::string("sim scenario: ") + e.what());
  }
  return s;
}

}  // namespace yard
