// The torch-free engine behind trainyard::online_fit: checks the input,
// writes the fit bundle (model file, arrays as .npy under data/,
// fit_spec.json — the layout of the Python SDK, docs/python.md), uploads it
// through the C++ client, creates the job running yard-train, follows its
// events, mirrors its checkpoints and logs, and downloads the trained model.
// online_fit.cc turns tensors and modules into the inputs here and back.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "client/http_client.h"
#include "client/transfer.h"
#include "common/manifest.h"
#include "common/status.h"
#include "sdk/fit_types.h"
#include "trainer/npy.h"

namespace trainyard::internal {

using yard::trainer::NpyArray;

// online_fit's input with the tensors already turned into arrays and the
// model into a function that saves it.
struct JobInput {
  // Writes the TorchScript module to `path`.
  std::function<yard::Status(const std::string& path)> save_model;
  NpyArray train_x, train_y;
  std::optional<std::pair<NpyArray, NpyArray>> validation;
  std::vector<std::string> machine_ids;
  int64_t batch_size = 1;
  int64_t epochs = 1;
  std::string description;
  double cool_down_period_s = 0;
  nlohmann::json fit_kwargs = nlohmann::json::object();
  std::optional<std::string> ckpt_dir, log_dir;
  double wait_request_s = 30;
  double wait_new_job_create_s = -1;
  double wait_new_job_create_interval = 10;
  uint64_t seed = 0;
  bool record = false;  // write a record archive when the job ends (record.h)
  std::map<std::string, std::string> packages;  // for the record: name -> version
  Connection connection;
  ProgressCallback on_progress;  // never empty here
};

// Everything that can be checked before a job exists (arrays, numbers,
// fit_kwargs through yard-train's own parser). kInvalidArgument naming what
// is wrong and what to do.
yard::Status CheckInput(const JobInput& in);

// A folder removed with its contents when this goes away.
class TempDir {
 public:
  static yard::StatusOr<std::unique_ptr<TempDir>> Make(const std::string& prefix);
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// A submitted job and the connection it was made on.
struct Submitted {
  std::unique_ptr<yard::HttpClient> client;
  std::string job_id;
  TransferReport transfer;
  // With in.record only: the bundle folder (main/, data/), the job spec
  // without its bundle, and the bundle manifest.
  std::unique_ptr<TempDir> bundle_dir;
  nlohmann::json spec, manifest;
};

// REQUIRES: CheckInput(in).ok(). Writes the bundle into a temporary folder,
// connects, uploads (data/ first and apart, for the numbers) and creates the
// job. On error no job exists.
yard::StatusOr<Submitted> Submit(const JobInput& in);

struct JobOutcome {
  std::string state, message;
  std::vector<std::string> last_output;
  std::optional<History> history;      // set when model_path is
  std::string model_path;              // the downloaded outputs/model.pt; "" if none
  std::unique_ptr<TempDir> model_dir;  // owns model_path
  std::string record_path;             // the record archive written; "" if none
};

// Follows the job to its end (showing progress, mirroring artifacts into
// in.ckpt_dir / in.log_dir) and fetches its trained model if it succeeded.
// Errors only when the server fails us; a failed job is an outcome.
yard::StatusOr<JobOutcome> Finish(const Submitted& job, const JobInput& in);

// Uploads top/data then top/main (the arrays apart, for the numbers in
// `report`); returns the bundle manifest with the arrays under data/.
yard::StatusOr<yard::Manifest> UploadBundle(const yard::HttpClient& client, const std::string& top,
                                            TransferReport* report);

class ProgressTracker;
// Streams the job's events into `tracker` and `mirror` until its end,
// reconnecting while the connection fails for less than two minutes.
yard::Status FollowToEnd(const yard::HttpClient& client, const std::string& job_id,
                         ProgressTracker* tracker, yard::ArtifactMirror* mirror);

// The `yard` binary to start an embedded server with: `configured`, else
// $YARD_BIN, else `yard` beside the running program, else on PATH; "" when
// none is found.
std::string FindYardBinary(const std::string& configured);

}  // namespace trainyard::internal
