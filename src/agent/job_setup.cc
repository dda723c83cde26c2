#include "agent/job_setup.h"

#include <fcntl.h>
#include <stdio.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include "agent/event_spool.h"
#include "agent/job_folders.h"
#include "common/bundle.h"

namespace yard {

namespace fs = std::filesystem;

namespace {

constexpr int kFetchConcurrency = 3;

Status ParseStringMap(const Json& j, const std::string& field, EnvMap* out) {
  if (j.is_null()) return Status::Ok();
  if (!j.is_object()) return InvalidArgument("assignment: \"" + field + "\" is not an object");
  for (const auto& [k, v] : j.items()) {
    if (!v.is_string())
      return InvalidArgument("assignment: " + field + "." + k + " is not a string");
    (*out)[k] = v.get<std::string>();
  }
  return Status::Ok();
}

Status ParseCommand(const Json& j, std::vector<std::string>* out) {
  if (!j.is_array() || j.empty())
    return InvalidArgument("assignment: \"command\" is not a non-empty array");
  for (const Json& arg : j) {
    if (!arg.is_string()) return InvalidArgument("assignment: \"command\" holds a non-string");
    out->push_back(arg.get<std::string>());
  }
  return Status::Ok();
}

Status ParseResume(const Json& j, std::optional<FileEntry>* out, std::vector<FileEntry>* siblings) {
  if (j.is_null()) return Status::Ok();
  if (j.is_object() && j.contains("siblings") && j["siblings"].is_array()) {
    for (const Json& s : j["siblings"]) {
      StatusOr<FileEntry> e = FileEntryFromJson(s);
      if (!e.ok()) return e.status().WithContext("assignment: resume_from.siblings");
      siblings->push_back(std::move(*e));
    }
  }
  const Json* entry = &j;
  if (j.is_object() && j.contains("entry")) {
    if (j.value("dir", std::string("checkpoints")) != "checkpoints") {
      return InvalidArgument("assignment: resume_from is not under \"checkpoints\"");
    }
    entry = &j["entry"];
  }
  StatusOr<FileEntry> e = FileEntryFromJson(*entry);
  if (!e.ok()) return e.status().WithContext("assignment: resume_from");
  *out = std::move(*e);
  return Status::Ok();
}

Status ParseAssignment(const Json& j, Assignment* out) {
  if (!j.is_object()) return InvalidArgument("assignment is not an object");
  if (!j.contains("job") || !j["job"].is_string() || j["job"].get<std::string>().empty()) {
    return InvalidArgument("assignment without a job id");
  }
  out->job = j["job"];
  if (!j.contains("attempt") || !j["attempt"].is_number_integer()) {
    return InvalidArgument("assignment without an integer attempt");
  }
  out->attempt = j["attempt"];
  YARD_RETURN_IF_ERROR(ParseCommand(j.value("command", Json()), &out->command));
  if (j.contains("bundle") && !j["bundle"].is_null()) {  // none: an empty work/
    StatusOr<Manifest> bundle = Manifest::FromJson(j["bundle"]);
    if (!bundle.ok()) return bundle.status().WithContext("assignment: bundle");
    out->bundle = std::move(*bundle);
  }
  YARD_RETURN_IF_ERROR(ParseStringMap(j.value("env", Json()), "env", &out->env));
  if (j.contains("image") && !j["image"].is_null()) {
    if (!j["image"].is_string()) return InvalidArgument("assignment: \"image\" is not a string");
    out->image = j["image"];
  }
  if (j.contains("nodes")) {
    // The server's bound (JobSpecLimits::kMaxNodes), so that the int below cannot truncate.
    constexpr int64_t kMaxNodes = 10000;
    if (!j["nodes"].is_number_integer() || j["nodes"].get<int64_t>() < 1 ||
        j["nodes"].get<int64_t>() > kMaxNodes)
      return InvalidArgument("assignment: \"nodes\" is not an integer from 1 to 10000");
    out->nodes = j["nodes"].get<int>();
  }
  return ParseResume(j.value("resume_from", Json()), &out->resume_from, &out->resume_siblings);
}

}  // namespace

Status Assignment::Parse(const Json& j, Assignment* out) {
  try {
    return ParseAssignment(j, out);
  } catch (const Json::exception& e) {
    return InvalidArgument(std::string("assignment: ") + e.what());
  }
}

JobPaths JobPaths::For(const std::string& work_dir, const std::string& job, int64_t attempt) {
  JobPaths p;
  // Absolute: the job runs in work/ and must find the other folders from there.
  std::string base = fs::absolute(work_dir).lexically_normal().string();
  if (base.size() > 1 && base.back() == '/') base.pop_back();
  p.root = base + "/jobs/" + SafeFileName(job) + "-" + std::to_string(attempt);
  p.work = p.root + "/work";
  p.checkpoints = p.root + "/checkpoints";
  p.logs = p.root + "/logs";
  p.outputs = p.root + "/outputs";
  p.metrics = p.root + "/metrics.jsonl";
  p.notice = p.root + "/preemption-notice.json";
  return p;
}

Status JobPaths::Create() const {
  // An earlier attempt's emptied folder (job_folders.h) taken whole; none,
  // or this folder is there already (a retried start): made as usual.
  std::string jobs_dir = fs::path(root).parent_path().string();
  for (const char* name : kSpareJobFolders) {
    std::string spare = jobs_dir + "/" + name;
    if (::renameat2(AT_FDCWD, spare.c_str(), AT_FDCWD, root.c_str(), RENAME_NOREPLACE) == 0) break;
    if (errno != ENOENT) break;  // this folder exists already
  }
  for (const std::string* dir : {&work, &checkpoints, &logs, &outputs}) {
    std::error_code ec;
    fs::create_directories(*dir, ec);
    if (ec) return Internal("creating " + *dir + ": " + ec.message());
  }
  return Status::Ok();
}

StatusOr<std::string> PrepareJobFolder(const Assignment& a, const JobPaths& paths,
                                       const ChunkCache& cache) {
  YARD_RETURN_IF_ERROR(paths.Create());
  YARD_RETURN_IF_ERROR(cache.Prefetch(a.bundle.ChunkHashes(), kFetchConcurrency));
  Status st = Materialize(a.bundle, paths.work, cache.AsSource(), cache.AsFiles());
  if (!st.ok()) return st.WithContext("unpacking the bundle");
  if (!a.resume_from) return std::string();
  Manifest checkpoint;
  checkpoint.files.push_back(*a.resume_from);
  for (const auto& sibling : a.resume_siblings) checkpoint.files.push_back(sibling);
  std::sort(checkpoint.files.begin(), checkpoint.files.end(),
            [](const FileEntry& x, const FileEntry& y) { return x.path < y.path; });
  YARD_RETURN_IF_ERROR(cache.Prefetch(checkpoint.ChunkHashes(), kFetchConcurrency));
  st = Materialize(checkpoint, paths.checkpoints, cache.AsSource(), cache.AsFiles());
  if (!st.ok()) return st.WithContext("fetching the checkpoint to resume from");
  return paths.checkpoints + "/" + a.resume_from->path;
}

EnvMap JobEnvironment(const EnvMap& inherited, const EnvMap& job_env, const Assignment& a,
                      const JobPaths& paths, const std::string& resume_path) {
  EnvMap env = inherited;
  for (const EnvMap* layer : {&job_env, &a.env}) {
    for (const auto& [k, v] : *layer) env[k] = v;
  }
  env["YARD_JOB_ID"] = a.job;
  env["YARD_CHECKPOINT_DIR"] = paths.checkpoints;
  env["YARD_LOG_DIR"] = paths.logs;
  env["YARD_OUTPUT_DIR"] = paths.outputs;
  env["YARD_METRICS"] = paths.metrics;
  env["YARD_PREEMPTION_NOTICE"] = paths.notice;
  env["PYTHONUNBUFFERED"] = "1";
  // Set only when resuming, and not inherited from the agent's own environment either.
  if (resume_path.empty())
    env.erase("YARD_RESUME_FROM");
  else
    env["YARD_RESUME_FROM"] = resume_path;
  return env;
}

EnvMap EnvMapFrom(const std::vector<std::string>& key_values) {
  EnvMap env;
  for (const std::string& kv : key_values) {
    size_t eq = kv.find('=');
    if (eq != std::string::npos && eq > 0) env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return env;
}

}  // namespace yard
