// Builders of the events the controller writes into a job's stream
// (docs/api.md, "Events"). Internal to src/server.
#pragma once

#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace yard {

// Notifier keys: a job's stream moved; an instance has new work.
inline constexpr const char* kJobKey = "job:";
inline constexpr const char* kInstanceKey = "inst:";

inline nlohmann::json StateEvent(const std::string& state, const std::string& message) {
  return {{"kind", "state"}, {"state", state}, {"message", message}};
}

inline nlohmann::json DecisionEvent(const std::string& message) {
  return {{"kind", "decision"}, {"message", message}};
}

// A line in the job's output itself, so `yard logs` shows it in place.
inline nlohmann::json OutputMarker(const std::string& text) {
  return {{"kind", "output"}, {"data", "----- yard: " + text + " -----\n"}};
}

inline std::string FormatSeconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g s",
                static_cast<double>(static_cast<long long>(s * 10 + 0.5)) / 10);
  return buf;
}

}  // namespace yard
