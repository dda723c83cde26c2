// `yard replay ARCHIVE`: runs a record archive (record.h, docs/formats.md
// "Record archive"; written by either SDK) again on the connected server and
// compares its final metrics with the recorded ones. Torch-free.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "client/http_client.h"
#include "common/status.h"
#include "sdk/fit_job.h"
#include "sdk/fit_types.h"

namespace trainyard::internal {

// An archive unpacked into a temporary folder (record.json, events.jsonl,
// bundle/{manifest.json, main/, data/}), removed with this.
struct LoadedRecord {
  nlohmann::json record;  // record.json
  std::unique_ptr<TempDir> dir;
};

// Unpacks `archive` with `tar` after checking that every entry is a plain
// file or folder with a relative path without "..". kInvalidArgument for
// an archive that is not a trainyard record or of another version.
yard::StatusOr<LoadedRecord> LoadRecordArchive(const std::string& archive);

// One row per metric of either side (epoch left out), by name:
// {metric, recorded, replayed, diff, within_tolerance}; recorded, replayed
// or diff null when a side lacks it; within tolerance when
// |diff| <= tolerance * max(1, |recorded|).
nlohmann::json CompareMetrics(const nlohmann::json& recorded, const nlohmann::json& replayed,
                              double tolerance);

struct ReplayOptions {
  std::vector<std::string> machines;  // empty: the server's default
  double tolerance = 1e-3;
  // The interpreter for a Keras runner command (`<python> -m
  // trainyard.runner`): the recording machine's may not exist here.
  std::string python = "python3";
  ProgressCallback on_progress;  // never empty
};

// Submits the loaded archive's job again, follows it to its end and compares:
// {recorded_job, job, state, tolerance, metrics: CompareMetrics rows, same}
// where `same` is true when the job succeeded and every metric is within
// the tolerance. Errors when the server fails us.
yard::StatusOr<nlohmann::json> Replay(const yard::HttpClient& client, const LoadedRecord& loaded,
                                      const ReplayOptions& o);

}  // namespace trainyard::internal
