// Trainyard's C++ SDK: trains a TorchScript module on another machine, the
// C++ face of Python's trainyard.online_fit (docs/cpp.md).
//
//   #include "sdk/trainyard.h"
//
//   trainyard::FitOptions o;
//   o.machine_ids = {"local"};
//   o.batch_size = 32;
//   o.epochs = 10;
//   o.fit_kwargs = {{"loss", "cross_entropy"}, {"metrics", {"accuracy"}}};
//   o.directory_to_save_ckpt = "ckpt";
//   trainyard::FitResult r = trainyard::online_fit(module, X, Y, o);
//   if (r.ok()) r.model->save("trained.pt");
//
// The job is an ordinary Trainyard job that runs `yard-train` (see
// src/trainer/README.md for what it does with the arrays and fit_kwargs).
// Link the CMake target `trainyard_sdk`.
#pragma once

#include <torch/script.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sdk/fit_types.h"

namespace trainyard {

// online_fit's arguments: the same names and defaults as Python's (None is
// std::nullopt), plus three that only C++ needs (the last block).
struct FitOptions {
  // Ordered preference list ("p2.xlarge:spot" names a market). Empty: the
  // server's default machine type (C++ has no interactive picker).
  std::vector<std::string> machine_ids;
  int64_t batch_size = 1;
  int64_t epochs = 1;
  // (validation inputs, validation targets), as many rows each.
  std::optional<std::pair<torch::Tensor, torch::Tensor>> validation_data;
  std::string description;
  double cool_down_period_s = 0;
  // yard-train's fit_kwargs, a JSON object: loss, optimizer, learning_rate,
  // metrics, shuffle, momentum, weight_decay (src/trainer/README.md).
  nlohmann::json fit_kwargs = nlohmann::json::object();
  // Local folders the job's checkpoints (epoch-NNN.pt) and TensorBoard logs
  // are mirrored into while it runs.
  std::optional<std::string> directory_to_save_ckpt;
  std::optional<std::string> directory_to_save_log;
  double wait_request_s = 30;
  double wait_new_job_create_s = -1;  // <= 0: wait for the quota indefinitely
  double wait_new_job_create_interval = 10;
  // Write trainyard-record-<job>.tar.gz (into $TRAINYARD_RECORD_DIR, else
  // the current folder) when the job ends: what `yard replay` runs again
  // (docs/formats.md, "Record archive").
  bool record = false;

  // C++ only.
  ProgressCallback on_progress;  // empty: PrintProgress
  Connection connection;         // empty fields: like the yard CLI
  uint64_t seed = 0;             // yard-train's --seed (shuffling, dropout)
};

// The outcome of a job. A job that ends without a model (failed, cancelled,
// no machine could be had, quota wait given up) is returned, not thrown —
// as Python returns (job_id, None, None) — with the reason in `state`,
// `message` and `last_output`, after the reason was shown as progress.
struct FitResult {
  std::string job_id;
  std::optional<torch::jit::Module> model;  // the trained module, on the CPU
  std::optional<History> history;           // set exactly when model is
  std::string state;                        // the job's final state: "succeeded", "failed", ...
  std::string message;                      // the server's word on that state ("exit code 2", ...)
  std::vector<std::string> last_output;     // the job's last output lines (up to 20)
  TransferReport transfer;                  // what uploading the bundle cost
  std::string record_archive;               // with options.record: the archive's path
  bool ok() const { return model.has_value(); }
};

// Trains `model` (a TorchScript module with a forward method) on
// (train_X, train_Y) in a new job, shows its progress until it ends, mirrors
// its checkpoints and logs, and returns the trained module and history.
// Tensors may live on any device; they are copied to the CPU. Inputs must
// be float32/float64/int32/int64 (converted to the model's parameter dtype
// on the instance); class-id targets int32/int64.
//
// Throws FitError("invalid_argument") for bad input before any job exists:
// row counts that differ, empty or zero-dimensional tensors, other dtypes,
// batch_size or epochs < 1, negative cool_down_period_s, fit_kwargs that
// yard-train would refuse (unknown key or loss, batch_size/epochs/
// validation_data given there), a module without forward.
// Throws FitError with the server's code when the server cannot be reached
// or refuses a request. Blocks the calling thread until the job ends.
FitResult online_fit(const torch::jit::Module& model, const torch::Tensor& train_X,
                     const torch::Tensor& train_Y, const FitOptions& options = {});

}  // namespace trainyard
