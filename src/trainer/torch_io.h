// The trainer's contact points with libtorch: loading modules and data,
// losses and metrics, optimizers, checkpoints, and turning libtorch
// exceptions into Status. Only torch TUs include this header.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "trainer/data_parallel.h"  // StepStats
#include "trainer/fit_options.h"
#include "trainer/npy.h"
#include "trainer/torch_includes.h"

namespace yard::trainer {

// Runs f(); a c10::Error or std::exception becomes Status(code, what + ": " +
// the exception's message without its C++ backtrace).
template <typename F>
Status TorchGuard(const std::string& what, F&& f, Code code = Code::kInternal);
// "[8, 64]".
std::string ShapeString(at::IntArrayRef sizes);
// The first line of a libtorch exception's message (for TorchScript
// interpreter errors, the line with the underlying error).
std::string TorchMessage(const std::exception& e);

// Loads a TorchScript module on the CPU. Errors: kNotFound for a missing
// file; kInvalidArgument, naming the torch version to save with, for a file
// that is not TorchScript or was saved by an incompatible torch.
StatusOr<torch::jit::Module> LoadModule(const std::string& path);

// A tensor over the array's bytes, which it takes over (no copy).
at::Tensor TensorFromNpy(NpyArray&& a);

// Inputs and targets of one split, both on the CPU with `rows` rows.
struct Dataset {
  at::Tensor x;  // floating point, the model's parameter dtype
  at::Tensor y;  // int64 class ids, or floating point shaped like the output
  int64_t rows = 0;
};

// Checks that x and y have the same number of rows (at least one) and that y
// suits the loss (class ids must be integral and >= 0), then converts them.
// `what` names the split in messages ("training data"). kInvalidArgument.
StatusOr<Dataset> MakeDataset(NpyArray x, NpyArray y, LossKind loss, at::ScalarType float_type,
                              const std::string& what);

// Fits d.y to the model's output `out` (computed on d.x's first rows): class
// ids must be 1-D and below out.size(1); other targets are reshaped to the
// output's per-row shape when their element counts agree. kInvalidArgument.
Status FitTargetsToOutput(LossKind loss, const at::Tensor& out, Dataset* d,
                          const std::string& what);

// The loss, averaged over the batch (reduction "mean").
at::Tensor ComputeLoss(LossKind loss, const at::Tensor& out, const at::Tensor& y);
// The metric's mean over the batch. No autograd history is recorded.
double ComputeMetric(MetricKind metric, LossKind loss, const at::Tensor& out, const at::Tensor& y);

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const FitOptions& o,
                                                       std::vector<at::Tensor> params);

// Where training stands: `epoch` epochs done and, in a mid-epoch checkpoint
// (written on a spot interruption notice), `step` optimizer steps of the
// next one, whose sums so far are `partial`. step 0: at an epoch's end.
struct TrainingPoint {
  int64_t epoch = 0;
  int64_t step = 0;
  StepStats partial;
};

// The point at the end of epoch `epoch`.
inline TrainingPoint EpochEnd(int64_t epoch) {
  TrainingPoint p;
  p.epoch = epoch;
  return p;
}

// "<dir>/epoch-007.pt" (step 0) or "<dir>/epoch-007-step-00040.pt", and
// the side file "<dir>/epoch-007.state" / "...-step-00040.state".
std::string CheckpointPath(const std::string& dir, const TrainingPoint& point);
std::string StatePathFor(const std::string& checkpoint_path);

// Writes the module (loadable by Python's torch.jit.load) and, beside it,
// the optimizer state and the training point. Each file appears complete
// or not at all, the state first.
Status SaveCheckpoint(const torch::jit::Module& module, const torch::optim::Optimizer& optimizer,
                      OptimizerKind kind, const TrainingPoint& point, const std::string& dir);
// Saves `module` to `path` atomically (write then rename).
Status SaveModule(const torch::jit::Module& module, const std::string& path);

// Restores the optimizer state saved beside `checkpoint_path` and returns the
// training point it holds (state version 1 files: epoch ends only).
// kInvalidArgument when the side file is missing, of an unknown version, or
// written for another optimizer or another number of metrics.
StatusOr<TrainingPoint> LoadTrainingState(const std::string& checkpoint_path, OptimizerKind kind,
                                          size_t metrics, torch::optim::Optimizer* optimizer);

// ---------------------------------------------------------------------------

template <typename F>
Status TorchGuard(const std::string& what, F&& f, Code code) {
  try {
    f();
    return Status::Ok();
  } catch (const std::exception& e) {
    return Status(code, what + ": " + TorchMessage(e));
  }
}

}  // namespace yard::trainer
