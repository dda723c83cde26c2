#include "sdk/record.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>

#include "common/command_runner.h"
#include "common/files.h"
#include "common/process.h"
#include "sdk/fit_job.h"
#include "sdk/progress.h"

namespace trainyard::internal {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

bool IsSecretName(std::string name) {
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return std::toupper(c); });
  for (const char* word : {"TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH",
                           "COOKIE", "SESSION"}) {
    if (name.find(word) != std::string::npos) return true;
  }
  return false;
}

Json EnvironmentVariables() {
  Json env = Json::object();
  for (const std::string& kv : yard::CurrentEnvironment()) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || IsSecretName(kv.substr(0, eq))) continue;
    env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

double UnixSeconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

Json RecordJson(const RecordInput& in) {
  Json decisions = Json::array();
  for (const Json& ev : in.events)
    if (ev.value("kind", "") == "decision") decisions.push_back(ev.value("message", ""));
  return {
      {"format", "trainyard-record"},
      {"version", 1},
      {"job_id", in.job_id},
      {"created_at", UnixSeconds()},
      {"spec", in.spec},
      {"job", in.job},
      {"environment", in.environment.is_null() ? RecordEnvironment(in.packages) : in.environment},
      {"decisions", decisions},
      {"final_metrics", FinalMetrics(in.events)}};
}

// A rename, or a copy and a removal where the two are on different file
// systems (the Python SDK's stash under $YARD_HOME, the stage under /tmp).
yard::Status MoveTree(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::rename(from, to, ec);
  if (!ec) return yard::Status::Ok();
  fs::copy(from, to, fs::copy_options::recursive, ec);
  if (ec)
    return yard::Internal("staging the bundle's " + from.filename().string() + " (" +
                          from.string() + "): " + ec.message());
  fs::remove_all(from, ec);
  return yard::Status::Ok();
}

// stage/{record.json, events.jsonl, bundle/manifest.json, bundle/main, bundle/data}
yard::Status Stage(RecordInput& in, const std::string& stage) {
  YARD_RETURN_IF_ERROR(yard::MakeDirs(stage + "/bundle"));
  YARD_RETURN_IF_ERROR(yard::WriteFileAtomic(stage + "/record.json", RecordJson(in).dump(2)));
  std::string lines;
  // Output bytes need not be UTF-8: JSON text gets U+FFFD for what is not.
  for (const Json& ev : in.events)
    lines += ev.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
  YARD_RETURN_IF_ERROR(yard::WriteFileAtomic(stage + "/events.jsonl", lines));
  YARD_RETURN_IF_ERROR(yard::WriteFileAtomic(stage + "/bundle/manifest.json", in.manifest.dump()));
  for (const char* part : {"main", "data"})
    YARD_RETURN_IF_ERROR(
        MoveTree(fs::path(in.bundle_top) / part, fs::path(stage) / "bundle" / part));
  return yard::Status::Ok();
}

}  // namespace

Json RecordEnvironment(const std::map<std::string, std::string>& packages,
                       const std::string& python) {
  struct utsname u {};
  ::uname(&u);
  std::string platform = std::string(u.sysname) + "-" + u.release + "-" + u.machine;
  return {{"os",
           {{"system", u.sysname},
            {"release", u.release},
            {"machine", u.machine},
            {"platform", platform}}},
          {"sdk", python.empty() ? "c++ (trainyard_sdk)" : "python (trainyard)"},
          {"python", python.empty() ? Json() : Json(python)},
          {"packages", packages},
          {"env", EnvironmentVariables()}};
}

Json FinalMetrics(const std::vector<Json>& events) {
  Json last = Json::object();
  for (const Json& ev : events) {
    const Json* v = EpochValues(ev);
    if (v && (last.empty() || (*v)["epoch"].get<double>() >= last["epoch"].get<double>()))
      last = *v;
  }
  for (const char* k : {"seconds", "samples_per_s", "epochs"}) last.erase(k);
  return last;
}

yard::StatusOr<std::string> WriteRecordArchive(RecordInput in, const std::string& out_dir) {
  std::string dir =
      !out_dir.empty() ? out_dir : yard::EnvOr("TRAINYARD_RECORD_DIR", fs::current_path().string());
  YARD_RETURN_IF_ERROR(yard::MakeDirs(dir));
  std::string path = (fs::absolute(dir) / ("trainyard-record-" + in.job_id + ".tar.gz")).string();
  YARD_ASSIGN_OR_RETURN(std::unique_ptr<TempDir> stage, TempDir::Make("trainyard-record-"));
  YARD_RETURN_IF_ERROR(Stage(in, stage->path()));
  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  yard::CommandSpec spec;
  spec.argv = {"tar", "-czf", tmp, "-C", stage->path(), "record.json", "events.jsonl", "bundle"};
  spec.timeout = std::chrono::minutes(10);
  yard::ProcessCommandRunner runner;
  YARD_ASSIGN_OR_RETURN(yard::CommandResult r, runner.Run(spec));
  std::error_code ec;
  if (!r.ok()) {
    fs::remove(tmp, ec);
    return yard::Internal("tar could not write " + tmp + ": " + r.Reason());
  }
  fs::rename(tmp, path, ec);
  if (ec) return yard::Internal("renaming " + tmp + " to " + path + ": " + ec.message());
  return path;
}

}  // namespace trainyard::internal
