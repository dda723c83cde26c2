#include "store/records.h"

#include <algorithm>
#include <iterator>
#include <type_traits>

namespace yard {

namespace job_state {
bool IsTerminal(const std::string& s) { return s == kSucceeded || s == kFailed || s == kCancelled; }
bool IsActive(const std::string& s) { return s == kRequesting || s == kStarting || s == kRunning; }
}  // namespace job_state

namespace instance_state {
bool IsTerminal(const std::string& s) { return s == kTerminated || s == kLost; }
}  // namespace instance_state

namespace {

constexpr const char* kScheduleKeys[] = {"machine",       "attempts",      "requested_at",
                                         "held_capacity", "waiting_since", "next_check",
                                         "run_instance",  "restarts",      "resume_from",
                                         "no_pipeline",   "pipelined_at",  "pipelined_requested_at",
                                         "output_bytes",  "output_capped"};

template <typename T>
std::optional<T> Read(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return std::nullopt;
  if constexpr (std::is_same_v<T, double>) {
    if (!it->is_number()) return std::nullopt;
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) return std::nullopt;
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) return std::nullopt;
  } else {
    if (!it->is_number_integer()) return std::nullopt;
  }
  return it->get<T>();
}

template <typename T>
void PutIfSet(Json& j, const char* key, const std::optional<T>& v) {
  if (v) j[key] = *v;
}

}  // namespace

Json JobSchedule::ToJson() const {
  Json j = unknown;
  j["machine"] = machine;
  if (!attempts.empty()) {
    Json list = Json::array();
    for (const auto& a : attempts) list.push_back({{"machine", a.machine}, {"reason", a.reason}});
    j["attempts"] = std::move(list);
  }
  PutIfSet(j, "requested_at", requested_at);
  PutIfSet(j, "held_capacity", held_capacity);
  PutIfSet(j, "waiting_since", waiting_since);
  if (next_check != 0) j["next_check"] = next_check;
  if (!run_instance.empty()) j["run_instance"] = run_instance;
  if (restarts != 0) j["restarts"] = restarts;
  PutIfSet(j, "resume_from", resume_from);
  if (no_pipeline) j["no_pipeline"] = true;
  PutIfSet(j, "pipelined_at", pipelined_at);
  PutIfSet(j, "pipelined_requested_at", pipelined_requested_at);
  if (output_bytes != 0) j["output_bytes"] = output_bytes;
  if (output_capped) j["output_capped"] = true;
  return j;
}

JobSchedule JobSchedule::FromJson(const Json& j) {
  JobSchedule s;
  if (!j.is_object()) return s;
  s.machine = static_cast<size_t>(std::max<int64_t>(0, Read<int64_t>(j, "machine").value_or(0)));
  if (auto it = j.find("attempts"); it != j.end() && it->is_array())
    for (const Json& a : *it)
      if (a.is_object())
        s.attempts.push_back({Read<std::string>(a, "machine").value_or(""),
                              Read<std::string>(a, "reason").value_or("")});
  s.requested_at = Read<double>(j, "requested_at");
  s.held_capacity = Read<std::string>(j, "held_capacity");
  s.waiting_since = Read<double>(j, "waiting_since");
  s.next_check = Read<double>(j, "next_check").value_or(0);
  s.run_instance = Read<std::string>(j, "run_instance").value_or("");
  s.restarts = Read<int64_t>(j, "restarts").value_or(0);
  if (auto it = j.find("resume_from"); it != j.end() && it->is_object()) s.resume_from = *it;
  s.no_pipeline = Read<bool>(j, "no_pipeline").value_or(false);
  s.pipelined_at = Read<double>(j, "pipelined_at");
  s.pipelined_requested_at = Read<double>(j, "pipelined_requested_at");
  s.output_bytes = Read<int64_t>(j, "output_bytes").value_or(0);
  s.output_capped = Read<bool>(j, "output_capped").value_or(false);
  for (const auto& [key, value] : j.items())
    if (std::find(std::begin(kScheduleKeys), std::end(kScheduleKeys), key) ==
        std::end(kScheduleKeys))
      s.unknown[key] = value;
  return s;
}

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
