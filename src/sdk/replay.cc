#include "sdk/replay.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "client/reply.h"
#include "common/command_runner.h"
#include "common/files.h"
#include "common/strings.h"
#include "sdk/progress.h"
#include "sdk/record.h"

namespace trainyard::internal {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

yard::StatusOr<std::string> Tar(const std::vector<std::string>& argv) {
  yard::CommandSpec spec;
  spec.argv = argv;
  spec.timeout = std::chrono::minutes(10);
  yard::ProcessCommandRunner runner;
  YARD_ASSIGN_OR_RETURN(yard::CommandResult r, runner.Run(spec));
  if (!r.ok()) return yard::InvalidArgument("tar could not read the archive: " + r.Reason());
  return r.out;
}

// Every entry a plain file or folder ('-' or 'd' in `tar -tv`) with a
// relative path that stays inside the destination.
yard::Status CheckEntries(const std::string& archive) {
  YARD_ASSIGN_OR_RETURN(std::string verbose, Tar({"tar", "-tvzf", archive}));
  YARD_ASSIGN_OR_RETURN(std::string names, Tar({"tar", "-tzf", archive}));
  for (const std::string& line : yard::SplitNonEmpty(verbose, '\n')) {
    if (line[0] != '-' && line[0] != 'd')
      return yard::InvalidArgument(archive + ": entry \"" + line + "\" is not a plain file");
  }
  for (const std::string& name : yard::SplitNonEmpty(names, '\n')) {
    fs::path p(name);
    bool up = std::any_of(p.begin(), p.end(), [](const fs::path& part) { return part == ".."; });
    if (p.is_absolute() || up)
      return yard::InvalidArgument(archive + ": entry \"" + name + "\" is not a relative path");
  }
  return yard::Status::Ok();
}

yard::Status CheckFormat(const std::string& archive, const Json& rec) {
  if (!rec.is_object() || rec.value("format", "") != "trainyard-record")
    return yard::InvalidArgument(archive + " is not a trainyard record archive");
  if (rec.value("version", Json()) != Json(1))
    return yard::InvalidArgument(archive + ": record version " +
                                 rec.value("version", Json()).dump() +
                                 " is not supported (this yard reads version 1)");
  return yard::Status::Ok();
}

// The string `field` of the job in a server's answer {"job": {...}} to
// `route`, checked (client/reply.h): an answer of another shape is an error
// naming the route and the field, not an exception.
yard::StatusOr<std::string> JobField(Json answer, const std::string& route, const char* field) {
  yard::Reply reply(std::move(answer), route);
  YARD_ASSIGN_OR_RETURN(yard::Reply job, reply.Field("job"));
  return job.Get<std::string>(field);
}

// The archive's job spec with the bundle just uploaded, the machines asked
// for and a Keras runner's interpreter replaced.
Json ReplaySpec(const Json& rec, const yard::Manifest& bundle, const ReplayOptions& o) {
  Json spec = rec.value("spec", Json::object());
  spec["bundle"] = bundle.ToJson();
  spec["machines"] = o.machines;
  Json command = spec.value("command", Json::array());
  if (command.size() >= 3 && command[1] == "-m" && command[2] == "trainyard.runner")
    command[0] = o.python;
  spec["command"] = command;
  std::string description = spec.value("description", "");
  spec["description"] =
      "replay of " + rec.value("job_id", "") + (description.empty() ? "" : ": " + description);
  return spec;
}

void Tell(const ReplayOptions& o, const std::string& text) {
  Progress p;
  p.text = text;
  o.on_progress(p);
}

Json DiffOf(const Json& a, const Json& b) {
  if (!a.is_number() || !b.is_number()) return Json();
  return b.get<double>() - a.get<double>();
}

}  // namespace

yard::StatusOr<LoadedRecord> LoadRecordArchive(const std::string& archive) {
  if (!fs::is_regular_file(archive))
    return yard::InvalidArgument(archive +
                                 " is not a file: give the path of a record archive "
                                 "(trainyard-record-<job>.tar.gz)");
  YARD_RETURN_IF_ERROR(CheckEntries(archive));
  LoadedRecord out;
  YARD_ASSIGN_OR_RETURN(out.dir, TempDir::Make("trainyard-replay-"));
  YARD_RETURN_IF_ERROR(Tar({"tar", "-xzf", archive, "-C", out.dir->path()}).status());
  yard::StatusOr<std::string> text = yard::ReadFile(out.dir->path() + "/record.json");
  if (!text.ok())
    return yard::InvalidArgument(archive +
                                 " is not a trainyard record archive: it has no "
                                 "record.json (record=True writes trainyard-record-<job>.tar.gz)");
  out.record = Json::parse(*text, nullptr, /*allow_exceptions=*/false);
  YARD_RETURN_IF_ERROR(CheckFormat(archive, out.record));
  return out;
}

Json CompareMetrics(const Json& recorded, const Json& replayed, double tolerance) {
  std::set<std::string> keys;
  for (const Json* side : {&recorded, &replayed})
    for (const auto& [k, v] : side->items()) keys.insert(k);
  keys.erase("epoch");
  Json rows = Json::array();
  for (const std::string& k : keys) {
    Json a = recorded.value(k, Json()), b = replayed.value(k, Json());
    Json diff = DiffOf(a, b);
    bool ok = diff.is_number() &&
              std::abs(diff.get<double>()) <= tolerance * std::max(1.0, std::abs(a.get<double>()));
    rows.push_back({{"metric", k},
                    {"recorded", a},
                    {"replayed", b},
                    {"diff", diff},
                    {"within_tolerance", ok}});
  }
  return rows;
}

yard::StatusOr<Json> Replay(const yard::HttpClient& client, const LoadedRecord& loaded,
                            const ReplayOptions& o) {
  const Json& rec = loaded.record;
  TransferReport transfer;
  YARD_ASSIGN_OR_RETURN(yard::Manifest bundle,
                        UploadBundle(client, loaded.dir->path() + "/bundle", &transfer));
  YARD_ASSIGN_OR_RETURN(Json created, client.Post("/v1/jobs", ReplaySpec(rec, bundle, o)));
  YARD_ASSIGN_OR_RETURN(std::string job_id, JobField(std::move(created), "POST /v1/jobs", "id"));
  Tell(o, "replaying " + rec.value("job_id", "") + " as " + job_id);
  ProgressTracker tracker(job_id, 0, o.on_progress);
  yard::ArtifactMirror mirror(client, {});
  YARD_RETURN_IF_ERROR(FollowToEnd(client, job_id, &tracker, &mirror));
  tracker.Close();
  YARD_ASSIGN_OR_RETURN(Json final_job, client.Get("/v1/jobs/" + job_id));
  YARD_ASSIGN_OR_RETURN(std::string state,
                        JobField(std::move(final_job), "GET /v1/jobs/" + job_id, "state"));
  Json rows = CompareMetrics(rec.value("final_metrics", Json::object()),
                             FinalMetrics(tracker.events()), o.tolerance);
  bool same = state == "succeeded" && !rows.empty() &&
              std::all_of(rows.begin(), rows.end(),
                          [](const Json& r) { return r["within_tolerance"].get<bool>(); });
  return Json{{"recorded_job", rec.value("job_id", "")},
              {"job", job_id},
              {"state", state},
              {"tolerance", o.tolerance},
              {"metrics", rows},
              {"same", same}};
}

}  // namespace trainyard::internal
