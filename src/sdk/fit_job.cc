#include "sdk/fit_job.h"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>

#include "client/connection.h"
#include "client/follow.h"
#include "client/transfer.h"
#include "common/files.h"
#include "common/manifest.h"
#include "sdk/progress.h"
#include "sdk/record.h"
#include "trainer/fit_options.h"

namespace trainyard::internal {
namespace {

using yard::InvalidArgument;
using yard::Json;
using yard::Status;
using yard::StatusOr;

namespace fs = std::filesystem;

// A stream silent (every reconnect failing) this long is given up; the job
// goes on and `yard logs JOB -f` can follow it.
constexpr auto kGiveUpAfter = std::chrono::minutes(2);

Status CheckArray(const std::string& name, const NpyArray& a) {
  if (a.shape.empty())
    return InvalidArgument(name + " must have at least one dimension (one row per sample)");
  return Status::Ok();
}

Status CheckPair(const std::string& what, const std::string& x_name, const NpyArray& x,
                 const std::string& y_name, const NpyArray& y) {
  YARD_RETURN_IF_ERROR(CheckArray(x_name, x));
  YARD_RETURN_IF_ERROR(CheckArray(y_name, y));
  if (x.rows() != y.rows())
    return InvalidArgument(what + ": " + x_name + " has " + std::to_string(x.rows()) +
                           " rows but " + y_name + " has " + std::to_string(y.rows()) +
                           ": they must match");
  if (x.rows() == 0) return InvalidArgument(what + ": " + x_name + " is empty");
  return Status::Ok();
}

Status CheckFitKwargs(const Json& kwargs) {
  if (!kwargs.is_object())
    return InvalidArgument("fit_kwargs must be a JSON object, e.g. {\"loss\": \"mse\"}");
  for (const char* key : {"batch_size", "epochs", "validation_data"}) {
    if (kwargs.contains(key))
      return InvalidArgument(std::string("fit_kwargs may not repeat '") + key +
                             "': set FitOptions::" + key + " instead");
  }
  return yard::trainer::ParseFitKwargs(kwargs.dump()).status();
}

Status CheckNumbers(const JobInput& in) {
  if (in.batch_size < 1)
    return InvalidArgument("batch_size must be >= 1, got " + std::to_string(in.batch_size));
  if (in.epochs < 1)
    return InvalidArgument("epochs must be >= 1, got " + std::to_string(in.epochs));
  if (!(in.cool_down_period_s >= 0)) return InvalidArgument("cool_down_period_s must be >= 0");
  if (!(in.wait_request_s >= 0)) return InvalidArgument("wait_request_s must be >= 0");
  if (!(in.wait_new_job_create_interval > 0))
    return InvalidArgument("wait_new_job_create_interval must be > 0");
  return Status::Ok();
}

bool IsExecutable(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec) && ::access(path.c_str(), X_OK) == 0;
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

std::string Human(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 3) v /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

// The bundle's arrays, by their names in data/ (as the Python SDK names them).
std::vector<std::pair<std::string, const yard::trainer::NpyArray*>> BundleArrays(
    const JobInput& in) {
  std::vector<std::pair<std::string, const yard::trainer::NpyArray*>> arrays = {
      {"train_x.npy", &in.train_x}, {"train_y.npy", &in.train_y}};
  if (in.validation) {
    arrays.emplace_back("val_x.npy", &in.validation->first);
    arrays.emplace_back("val_y.npy", &in.validation->second);
  }
  return arrays;
}

Status WriteArrays(const JobInput& in, const std::string& data_dir) {
  YARD_RETURN_IF_ERROR(yard::MakeDirs(data_dir));
  for (const auto& [name, a] : BundleArrays(in)) {
    YARD_RETURN_IF_ERROR(
        yard::WriteFileAtomic(JoinPath(data_dir, name), yard::trainer::EncodeNpy(*a)));
  }
  return Status::Ok();
}

// The arrays as .npy files in memory: each header, then the array's own
// bytes (borrowed from `in`, which outlives the upload).
std::vector<yard::MemoryFile> ArrayFiles(const JobInput& in) {
  std::vector<yard::MemoryFile> files;
  for (const auto& [name, a] : BundleArrays(in))
    files.push_back({name, 0644, yard::trainer::NpyHeader(*a), a->data.view()});
  return files;
}

Json FitSpec(const JobInput& in) {
  Json spec = {{"version", 1},
               {"framework", "torchscript"},
               {"model", "model.pt"},
               {"train_x", "data/train_x.npy"},
               {"train_y", "data/train_y.npy"},
               {"batch_size", in.batch_size},
               {"epochs", in.epochs},
               {"seed", in.seed},
               {"fit_kwargs", in.fit_kwargs},
               {"fit_arrays", Json::object()}};
  if (in.validation) {
    spec["val_x"] = "data/val_x.npy";
    spec["val_y"] = "data/val_y.npy";
  }
  return spec;
}

// yard-train's command line, as the Python SDK writes it.
std::vector<std::string> TrainCommand(const JobInput& in) {
  std::vector<std::string> cmd = {"yard-train"};
  auto flag = [&cmd](const char* name, std::string value) {
    cmd.push_back(name);
    cmd.push_back(std::move(value));
  };
  flag("--model", "model.pt");
  flag("--train-x", "data/train_x.npy");
  flag("--train-y", "data/train_y.npy");
  flag("--epochs", std::to_string(in.epochs));
  flag("--batch-size", std::to_string(in.batch_size));
  flag("--seed", std::to_string(in.seed));
  flag("--fit-kwargs", in.fit_kwargs.dump());
  if (in.validation) {
    flag("--val-x", "data/val_x.npy");
    flag("--val-y", "data/val_y.npy");
  }
  return cmd;
}

// Writes top/main (model, fit spec); the arrays are sent from memory, and
// written into top/data only for a record (its archive holds them).
Status WriteBundle(const JobInput& in, const std::string& top) {
  std::string main_dir = JoinPath(top, "main");
  YARD_RETURN_IF_ERROR(yard::MakeDirs(main_dir));
  YARD_RETURN_IF_ERROR(in.save_model(JoinPath(main_dir, "model.pt")));
  if (in.record) YARD_RETURN_IF_ERROR(WriteArrays(in, JoinPath(top, "data")));
  return yard::WriteFileAtomic(JoinPath(main_dir, "fit_spec.json"), FitSpec(in).dump(2) + "\n");
}

StatusOr<std::unique_ptr<yard::HttpClient>> ConnectTo(const Connection& c) {
  yard::ConnectionOptions o{c.server, c.token, c.home, FindYardBinary(c.yard_binary)};
  o.restart_embedded = !o.yard_binary.empty();  // else "this executable" is Python, not yard
  bool embedded = o.server.empty() && yard::EnvOr("YARD_SERVER", "").empty();
  if (embedded && o.yard_binary.empty()) {
    // Connect would start *this* program as the server: refuse unless one runs.
    std::string home = o.home.empty() ? yard::DefaultYardHome() : o.home;
    StatusOr<std::string> url = yard::ReadServerUrl(home);
    if (!url.ok() || !yard::ServerHealthy(*url, yard::ReadServerTrust(home)))
      return yard::FailedPrecondition(
          "no Trainyard server runs on " + home +
          " and the `yard` binary to start one was not found: "
          "set Connection::yard_binary or $YARD_BIN, or put yard on PATH");
  }
  return yard::Connect(o);
}

}  // namespace

namespace {

// Uploads top/main and returns the bundle: its files and `data`'s (the
// arrays, already sent), under data/; `report` gets both uploads' numbers.
StatusOr<yard::Manifest> WithMain(const yard::HttpClient& client, const std::string& top,
                                  yard::Manifest data, const yard::TransferStats& data_stats,
                                  TransferReport* report) {
  yard::TransferStats rest_stats;
  YARD_ASSIGN_OR_RETURN(yard::Manifest bundle,
                        yard::UploadDirectory(client, JoinPath(top, "main"), &rest_stats));
  for (yard::FileEntry& f : data.files) {
    f.path = "data/" + f.path;
    bundle.files.push_back(std::move(f));
  }
  std::sort(bundle.files.begin(), bundle.files.end(),
            [](const yard::FileEntry& a, const yard::FileEntry& b) { return a.path < b.path; });
  report->data_chunks_sent = data_stats.chunks_sent;
  report->data_chunks_total = data_stats.chunks_total;
  report->chunks_sent = data_stats.chunks_sent + rest_stats.chunks_sent;
  report->chunks_total = data_stats.chunks_total + rest_stats.chunks_total;
  report->bytes_sent = data_stats.bytes_sent + rest_stats.bytes_sent;
  report->bytes_total = data_stats.bytes_total + rest_stats.bytes_total;
  return bundle;
}

// The arrays of `in` from memory (no .npy written), then top/main.
StatusOr<yard::Manifest> UploadBundleOf(const yard::HttpClient& client, const JobInput& in,
                                        const std::string& top, TransferReport* report) {
  yard::TransferStats data_stats;
  YARD_ASSIGN_OR_RETURN(yard::Manifest data,
                        yard::UploadMemoryFiles(client, ArrayFiles(in), &data_stats, {}));
  return WithMain(client, top, std::move(data), data_stats, report);
}

}  // namespace

StatusOr<yard::Manifest> UploadBundle(const yard::HttpClient& client, const std::string& top,
                                      TransferReport* report) {
  yard::TransferStats data_stats;
  YARD_ASSIGN_OR_RETURN(yard::Manifest data,
                        yard::UploadDirectory(client, JoinPath(top, "data"), &data_stats));
  return WithMain(client, top, std::move(data), data_stats, report);
}

namespace {

Json JobSpec(const JobInput& in, const yard::Manifest& bundle) {
  return {{"command", TrainCommand(in)},
          {"bundle", bundle.ToJson()},
          {"machines", in.machine_ids},
          {"description", in.description},
          {"cool_down_s", in.cool_down_period_s},
          // What yard-train would otherwise set by starting again, loading
          // libtorch twice (trainer/runtime_env.h); as python/trainyard/fit.py.
          {"env", {{"OMP_WAIT_POLICY", "PASSIVE"}}},
          {"wait_request_s", in.wait_request_s},
          {"wait_new_job_s", in.wait_new_job_create_s},
          {"wait_new_job_interval_s", in.wait_new_job_create_interval}};
}

void Tell(const JobInput& in, const std::string& job_id, const std::string& text) {
  Progress p;
  p.job_id = job_id;
  p.text = text;
  in.on_progress(p);
}

std::map<std::string, std::string> MirrorDirs(const JobInput& in) {
  std::map<std::string, std::string> dirs;
  if (in.ckpt_dir) dirs["checkpoints"] = fs::absolute(*in.ckpt_dir).lexically_normal().string();
  if (in.log_dir) dirs["logs"] = fs::absolute(*in.log_dir).lexically_normal().string();
  return dirs;
}

}  // namespace

Status FollowToEnd(const yard::HttpClient& client, const std::string& job_id,
                   ProgressTracker* tracker, yard::ArtifactMirror* mirror) {
  using Clock = std::chrono::steady_clock;
  std::optional<Clock::time_point> failing_since;  // reset by every event
  yard::FollowOptions opts;
  opts.on_disconnect = [&](const Status& s) {
    if (!failing_since) failing_since = Clock::now();
    if (Clock::now() - *failing_since > kGiveUpAfter) return false;
    tracker->Info("connection lost (" + s.message() + "); reconnecting");
    return true;
  };
  return yard::FollowEvents(client, job_id, opts, [&](const Json& ev) {
    failing_since.reset();
    if (yard::ArtifactMirror::Takes(ev)) mirror->Add(ev);
    tracker->OnEvent(ev);
    return true;
  });
}

namespace {

// Downloads outputs/model.pt into a new temporary folder; nullptr when the
// job wrote none.
StatusOr<std::unique_ptr<TempDir>> FetchModel(const yard::HttpClient& client,
                                              const std::string& job_id) {
  YARD_ASSIGN_OR_RETURN(Json arts, client.Get("/v1/jobs/" + job_id + "/artifacts"));
  for (const Json& a : arts.value("artifacts", Json::array())) {
    if (a.value("dir", "") != "outputs" || a["entry"].value("path", "") != "model.pt") continue;
    YARD_ASSIGN_OR_RETURN(yard::FileEntry entry, yard::FileEntryFromJson(a["entry"]));
    YARD_ASSIGN_OR_RETURN(std::unique_ptr<TempDir> dir, TempDir::Make("trainyard-model-"));
    yard::TransferStats stats;
    YARD_RETURN_IF_ERROR(yard::DownloadEntry(client, entry, dir->path(), nullptr, &stats));
    return dir;
  }
  return std::unique_ptr<TempDir>();
}

std::string UploadLine(const TransferReport& t) {
  return "sent the fit bundle: " + Human(t.bytes_total) + "; " + std::to_string(t.chunks_sent) +
         " of " + std::to_string(t.chunks_total) + " chunks were new (" +
         std::to_string(t.data_chunks_sent) + " of " + std::to_string(t.data_chunks_total) +
         " data chunks)";
}

std::string SubmittedLine(const JobInput& in, const std::string& job_id) {
  return "job " + job_id + " submitted (torchscript, " + std::to_string(in.train_x.rows()) +
         " samples, " + std::to_string(in.epochs) + " epochs" +
         (in.description.empty() ? "" : ", " + in.description) + ")";
}

// Writes the record archive; a failure is told, not returned: the job's
// outcome matters more than its record.
std::string Record(const Submitted& job, const Json& final_job, const JobInput& in,
                   ProgressTracker* tracker) {
  RecordInput r{job.job_id, job.spec,          job.manifest, job.bundle_dir->path(),
                final_job,  tracker->events(), in.packages,  nlohmann::json()};
  StatusOr<std::string> path = WriteRecordArchive(std::move(r));
  if (!path.ok()) {
    tracker->Info("could not write the record archive of " + job.job_id + ": " +
                  path.status().message());
    return "";
  }
  tracker->Info("recorded job " + job.job_id + " in " + *path);
  return *path;
}

}  // namespace

Status CheckInput(const JobInput& in) {
  YARD_RETURN_IF_ERROR(CheckPair("training data", "train_X", in.train_x, "train_Y", in.train_y));
  if (in.validation) {
    YARD_RETURN_IF_ERROR(CheckPair("validation_data", "validation_data.first", in.validation->first,
                                   "validation_data.second", in.validation->second));
  }
  YARD_RETURN_IF_ERROR(CheckNumbers(in));
  return CheckFitKwargs(in.fit_kwargs);
}

StatusOr<std::unique_ptr<TempDir>> TempDir::Make(const std::string& prefix) {
  std::string tmpl = (fs::temp_directory_path() / (prefix + "XXXXXX")).string();
  if (!::mkdtemp(tmpl.data())) return yard::ErrnoStatus("cannot create a folder like " + tmpl);
  return std::unique_ptr<TempDir>(new TempDir(tmpl));
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

StatusOr<Submitted> Submit(const JobInput& in) {
  YARD_ASSIGN_OR_RETURN(std::unique_ptr<TempDir> top, TempDir::Make("trainyard-fit-"));
  YARD_RETURN_IF_ERROR(WriteBundle(in, top->path()));
  Submitted out;
  YARD_ASSIGN_OR_RETURN(out.client, ConnectTo(in.connection));
  YARD_ASSIGN_OR_RETURN(yard::Manifest bundle,
                        UploadBundleOf(*out.client, in, top->path(), &out.transfer));
  Tell(in, "", UploadLine(out.transfer));
  Json spec = JobSpec(in, bundle);
  YARD_ASSIGN_OR_RETURN(Json reply, out.client->Post("/v1/jobs", spec));
  out.job_id = reply["job"].value("id", "");
  if (in.record) {
    out.manifest = spec["bundle"];
    spec.erase("bundle");
    out.spec = std::move(spec);
    out.bundle_dir = std::move(top);
  }
  Tell(in, out.job_id, SubmittedLine(in, out.job_id));
  return out;
}

StatusOr<JobOutcome> Finish(const Submitted& job, const JobInput& in) {
  ProgressTracker tracker(job.job_id, in.epochs, in.on_progress);
  yard::ArtifactMirror mirror(*job.client, MirrorDirs(in));
  Status followed = FollowToEnd(*job.client, job.job_id, &tracker, &mirror);
  tracker.Close();
  if (Status s = mirror.Drain(); !s.ok())
    tracker.Info("mirroring artifacts failed: " + s.message() +
                 " (the server keeps them: yard fetch " + job.job_id + ")");
  if (!followed.ok())
    return followed.WithContext("lost the event stream of " + job.job_id +
                                " (it goes on; follow it with `yard logs " + job.job_id + " -f`)");
  YARD_ASSIGN_OR_RETURN(Json reply, job.client->Get("/v1/jobs/" + job.job_id));
  JobOutcome out;
  out.state = reply["job"].value("state", "");
  const Json& message = reply["job"]["message"];
  out.message = message.is_string() ? message.get<std::string>() : "";
  out.last_output = tracker.last_output();
  if (in.record) out.record_path = Record(job, reply["job"], in, &tracker);
  if (out.state != "succeeded") {
    tracker.Info("job " + job.job_id + " " + out.state + ": " +
                 (out.message.empty() ? "no message" : out.message) + "; no model to return");
    return out;
  }
  YARD_ASSIGN_OR_RETURN(out.model_dir, FetchModel(*job.client, job.job_id));
  if (!out.model_dir) {
    tracker.Info("job " + job.job_id + " succeeded but wrote no trained model to its outputs");
    return out;
  }
  out.model_path = JoinPath(out.model_dir->path(), "model.pt");
  out.history = HistoryFromEvents(tracker.events());
  return out;
}

std::string FindYardBinary(const std::string& configured) {
  if (!configured.empty()) return configured;
  std::string env = yard::EnvOr("YARD_BIN", "");
  if (!env.empty()) return env;
  std::string beside = (fs::path(yard::SelfExecutable()).parent_path() / "yard").string();
  if (IsExecutable(beside)) return beside;
  std::string path = yard::EnvOr("PATH", "");
  for (size_t start = 0, end; start <= path.size(); start = end + 1) {
    end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    if (!dir.empty() && IsExecutable(JoinPath(dir, "yard"))) return JoinPath(dir, "yard");
  }
  return "";
}

}  // namespace trainyard::internal
