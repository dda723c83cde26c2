// record = true for both SDKs: the record archive of docs/formats.md
// ("Record archive"), written here for the C++ SDK and, through the
// binding, for the Python SDK, so `yard replay ARCHIVE` runs either again.
// Torch-free.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"

namespace trainyard::internal {

struct RecordInput {
  std::string job_id;
  nlohmann::json spec;      // the POST /v1/jobs body without "bundle"
  nlohmann::json manifest;  // the bundle manifest as submitted
  // A folder holding the bundle as main/ (top level) and data/ (arrays);
  // both are moved into the archive's staging folder.
  std::string bundle_top;
  nlohmann::json job;                           // the job as the API returned it at the end
  std::vector<nlohmann::json> events;           // the whole event stream
  std::map<std::string, std::string> packages;  // name -> version ("libtorch")
  // The caller's RecordEnvironment when it was taken earlier (the Python
  // SDK takes it at submission; attach may run in another process); null:
  // RecordEnvironment(packages) now.
  nlohmann::json environment;
};

// {"os": {system, release, machine, platform}, "sdk", "python", "packages",
// "env"}; env omits every variable whose name contains TOKEN, KEY, SECRET,
// PASSWORD, PASSWD, CREDENTIAL, AUTH, COOKIE or SESSION (case-insensitive).
// `python`: the interpreter's sys.version for the Python SDK ("" -> null,
// and sdk "c++ (trainyard_sdk)").
nlohmann::json RecordEnvironment(const std::map<std::string, std::string>& packages,
                                 const std::string& python = "");

// The last per-epoch metric values without seconds, samples_per_s, epochs.
nlohmann::json FinalMetrics(const std::vector<nlohmann::json>& events);

// Writes `out_dir`/trainyard-record-<job>.tar.gz (out_dir "":
// $TRAINYARD_RECORD_DIR, else the current folder; created if missing),
// atomically, with `tar` (present on every Debian). Returns its path.
yard::StatusOr<std::string> WriteRecordArchive(RecordInput in, const std::string& out_dir = "");

}  // namespace trainyard::internal
