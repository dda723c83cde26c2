#include "server/job_spec.h"

#include <cmath>
#include <cstdio>

#include "common/manifest.h"
#include "server/request_json.h"

namespace yard {
namespace {

// A name as a message can show it: NUL written as \0.
std::string EscapeForMessage(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '\0' ? std::string("\\0") : std::string(1, c);
  return out;
}

// A value as a message can show it: its JSON, cut short.
std::string Shown(const Json& v) {
  std::string text = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  return text.size() > 40 ? text.substr(0, 37) + "..." : text;
}

std::string Plain(double d) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.17g", d);
  return buf;
}

Status CheckCommand(const Json& spec) {
  if (!spec.contains("command") || !spec["command"].is_array() || spec["command"].empty())
    return InvalidArgument("'command' must be a non-empty list of strings");
  for (const auto& a : spec["command"])
    if (!a.is_string()) return InvalidArgument("'command' must be a non-empty list of strings");
  // What exec would refuse on the instance, refused before anything is paid for.
  if (spec["command"][0].get<std::string>().empty())
    return InvalidArgument(
        "'command' starts with an empty program name: give the program to run first");
  for (const auto& a : spec["command"])
    if (a.get<std::string>().find('\0') != std::string::npos)
      return InvalidArgument("'command' holds a NUL character, which no program can be given");
  return Status::Ok();
}

StatusOr<std::vector<std::string>> CheckBundle(const Json& spec) {
  if (!spec.contains("bundle")) return InvalidArgument("missing field 'bundle' (the job's files)");
  YARD_ASSIGN_OR_RETURN(Manifest bundle, Manifest::FromJson(spec["bundle"]));
  YARD_RETURN_IF_ERROR(ValidateManifest(bundle).WithContext("bundle"));
  return bundle.ChunkHashes();
}

StatusOr<Json> CheckMachines(const Json& spec, const Catalog& catalog) {
  Json machines = spec.value("machines", Json::array());
  if (!machines.is_array()) return InvalidArgument("'machines' must be a list of machine ids");
  for (const auto& m : machines) {
    if (!m.is_string()) return InvalidArgument("'machines' must be a list of machine ids");
    YARD_ASSIGN_OR_RETURN(MachineRequest req, ParseMachineRequest(m.get<std::string>()));
    if (!catalog.Find(req.type))
      return InvalidArgument("unknown machine type '" + req.type +
                             "' (known: " + catalog.NamesForHelp() + "; see `yard machines`)");
  }
  return machines;
}

Status CheckEnv(const Json& spec) {
  if (!spec.contains("env")) return Status::Ok();
  if (!spec["env"].is_object()) return InvalidArgument("'env' must be an object of strings");
  for (const auto& [k, v] : spec["env"].items()) {
    if (k.empty())
      return InvalidArgument("env has an empty name: each variable needs a name (NAME=VALUE)");
    if (k.find('=') != std::string::npos || k.find('\0') != std::string::npos)
      return InvalidArgument("env name '" + EscapeForMessage(k) +
                             "' holds '=' or NUL, which a variable's name cannot (NAME=VALUE)");
    if (!v.is_string()) return InvalidArgument("env '" + k + "' must be a string");
    if (v.get<std::string>().find('\0') != std::string::npos)
      return InvalidArgument("env '" + k +
                             "' holds a NUL character, which a variable's value cannot");
  }
  return Status::Ok();
}

Status CheckStrings(const Json& spec) {
  if (spec.contains("description") && !spec["description"].is_string())
    return InvalidArgument("'description' must be a string");
  if (spec.contains("image") &&
      (!spec["image"].is_string() || spec["image"].get<std::string>().empty()))
    return InvalidArgument(
        "'image' must be a non-empty image name (e.g. default-cpu; see docs/workflow.md)");
  if (spec.contains("settings")) {
    if (!spec["settings"].is_object())
      return InvalidArgument("'settings' must be an object of strings (KEY: VALUE)");
    for (const auto& [k, v] : spec["settings"].items())
      if (!v.is_string()) return InvalidArgument("setting '" + k + "' must be a string");
  }
  return Status::Ok();
}

// A number of seconds in [lo, hi] (lo excluded when `above_lo`), if present.
Status CheckSeconds(const Json& spec, const char* key, double lo, bool above_lo,
                    const char* meaning = "") {
  if (!spec.contains(key)) return Status::Ok();
  const Json& v = spec[key];
  double hi = JobSpecLimits::kMaxSeconds;
  bool ok = v.is_number() && v.get<double>() <= hi &&
            (above_lo ? v.get<double>() > lo : v.get<double>() >= lo);
  if (ok) return Status::Ok();
  return InvalidArgument(std::string("'") + key + "' must be a number of seconds " +
                         (above_lo ? "above " : "from ") + Plain(lo) +
                         (above_lo ? " up to " : " to ") + Plain(hi) + meaning + " (got " +
                         Shown(v) + ")");
}

Status CheckDurations(const Json& spec) {
  double max = JobSpecLimits::kMaxSeconds;
  YARD_RETURN_IF_ERROR(CheckSeconds(spec, "cool_down_s", 0, false));
  YARD_RETURN_IF_ERROR(CheckSeconds(spec, "wait_request_s", 0, false));
  YARD_RETURN_IF_ERROR(
      CheckSeconds(spec, "wait_new_job_s", -max, false, "; 0 or less waits indefinitely"));
  return CheckSeconds(spec, "wait_new_job_interval_s", 0, true);
}

// The whole number `key` holds, in [lo, hi]; `fallback` when absent. A JSON
// float with a whole value (3.0) is accepted: clients written in languages
// with one number type send those.
StatusOr<int64_t> WholeNumber(const Json& spec, const char* key, int64_t lo, int64_t hi,
                              int64_t fallback) {
  if (!spec.contains(key)) return fallback;
  const Json& v = spec[key];
  // As a double, 2^64-1 or -2^63 still compare outside any range below 2^53.
  double d = v.is_number() ? v.get<double>() : NAN;
  if (d >= static_cast<double>(lo) && d <= static_cast<double>(hi) && d == std::floor(d))
    return static_cast<int64_t>(d);
  return InvalidArgument(std::string("'") + key + "' must be a whole number from " +
                         std::to_string(lo) + " to " + std::to_string(hi) + " (got " + Shown(v) +
                         ")");
}

Status CheckNodes(int64_t nodes, const Json& machines, const Catalog& catalog) {
  for (const auto& m : machines) {
    const MachineType* t = catalog.Find(ParseMachineRequest(m.get<std::string>())->type);
    int64_t has = NodesOf(*t);
    if (has < nodes)
      return InvalidArgument("machine type '" + t->name + "' has " + std::to_string(has) +
                             " node(s); a job on " + std::to_string(nodes) +
                             " nodes needs types with at least as many (see `yard machines`)");
  }
  return Status::Ok();
}

}  // namespace

StatusOr<Json> ParseJobSpec(const std::string& body) {
  return ParseStrictObject(
      body,
      {"command", "bundle", "machines", "description", "cool_down_s", "env", "wait_request_s",
       "wait_new_job_s", "wait_new_job_interval_s", "max_restarts", "nodes", "image", "settings"});
}

int64_t NodesOf(const MachineType& type) {
  if (!type.options.is_object()) return 1;
  StatusOr<int64_t> n = WholeNumber(type.options, "nodes", 1, JobSpecLimits::kMaxNodes, 1);
  return n.ok() ? *n : 1;
}

StatusOr<ValidJobSpec> ValidateJobSpec(const Json& spec, const Catalog& catalog) {
  if (!spec.is_object()) return InvalidArgument("a job spec must be a JSON object");
  ValidJobSpec out{spec, {}};
  YARD_RETURN_IF_ERROR(CheckCommand(spec));
  YARD_ASSIGN_OR_RETURN(out.bundle_chunks, CheckBundle(spec));
  YARD_ASSIGN_OR_RETURN(out.spec["machines"], CheckMachines(spec, catalog));
  YARD_RETURN_IF_ERROR(CheckEnv(spec));
  YARD_RETURN_IF_ERROR(CheckStrings(spec));
  YARD_RETURN_IF_ERROR(CheckDurations(spec));
  YARD_ASSIGN_OR_RETURN(int64_t restarts,
                        WholeNumber(spec, "max_restarts", 0, JobSpecLimits::kMaxRestarts, -1));
  if (restarts >= 0) out.spec["max_restarts"] = restarts;
  YARD_ASSIGN_OR_RETURN(int64_t nodes, WholeNumber(spec, "nodes", 1, JobSpecLimits::kMaxNodes, 0));
  if (nodes > 0) {
    out.spec["nodes"] = nodes;
    YARD_RETURN_IF_ERROR(CheckNodes(nodes, out.spec["machines"], catalog));
  }
  if (spec.contains("settings") && spec["settings"].empty()) out.spec.erase("settings");  // as none
  return out;
}

}  // namespace yard
