#include "store/records.h"

#include <algorithm>

namespace yard {

namespace job_state {
bool IsTerminal(const std::string& s) {
  return s == kSucceeded || s == kFailed || s == kCancelled;
}
bool IsActive(const std::string& s) {
  return s == kRequesting || s == kStarting || s == kRunning;
}
}  // namespace job_state

namespace instance_state {
bool IsTerminal(const std::string& s) { return s == kTerminated || s == kLost; }
}  // namespace instance_state

Json JobRecord::ToApiJson() const {
  Json j = {{"id", id},
            {"user", user},
            {"state", state},
            {"description", description},
            {"machines", spec.value("machines", Json::array())},
            {"command", spec.value("command", Json::array())},
            {"instance", instance_id},
            {"machine_type", machine_type},
            {"created_at", created_at},
            {"updated_at", updated_at},
            {"exit_code", exit_code ? Json(*exit_code) : Json(nullptr)},
            {"message", message},
            {"attempt", attempt},
            {"last_seq", last_seq}};
  if (spec.contains("settings")) j["settings"] = spec["settings"];
  return j;
}

Json InstanceRecord::ToApiJson(double now) const {
  Json j = {{"id", id},
            {"machine_type", machine_type},
            {"provider", provider},
            {"state", state},
            {"user", user},
            {"job", job_id},
            {"created_at", created_at},
            {"state_since", state_since},
            {"age_s", std::max(0.0, now - created_at)},
            {"idle_s", (state == instance_state::kIdle || state == instance_state::kCooling)
                           ? std::max(0.0, now - state_since)
                           : 0.0}};
  if (state == instance_state::kCooling) j["cool_until"] = cool_until;
  if (info.contains("settings")) j["settings"] = info["settings"];
  return j;
}

}  // namespace yard
