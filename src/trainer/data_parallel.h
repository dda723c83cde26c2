// ReplicaSet: single-process data parallelism (MirroredStrategy semantics).
// One replica of the module per device; each batch is split evenly across
// them, every replica runs forward and backward on its shard in its own
// thread, and the shard gradients are combined into the primary replica
// weighted by shard size:
//
//   grad = sum_i (shard_i / batch) * grad_i
//
// which, for losses that average over the batch, is exactly the gradient
// one device would compute on the whole batch. The optimizer steps the
// primary; Broadcast() then copies its weights to the others.
#pragma once

#include <exception>
#include <memory>
#include <vector>

#include "trainer/fit_options.h"
#include "trainer/torch_includes.h"
#include "trainer/worker_pool.h"

namespace yard::trainer {

// Sums over the samples of one or more batches: loss and metric means
// multiplied by the number of rows they cover.
struct StepStats {
  double loss_sum = 0;
  std::vector<double> metric_sums;  // one per FitOptions::metrics entry
  int64_t rows = 0;

  void Add(const StepStats& other);
};

class ReplicaSet {
 public:
  // `primary` is trained in place: the optimizer must hold its parameters.
  // The other replicas are deep copies (Module::clone) moved to devices[1..].
  // REQUIRES: !devices.empty(), primary already on devices[0].
  ReplicaSet(torch::jit::Module primary, const std::vector<c10::Device>& devices, LossKind loss,
             std::vector<MetricKind> metrics);
  ~ReplicaSet();

  int size() const { return static_cast<int>(replicas_.size()); }

  // Splits the batch (x, y on the CPU, equal rows >= 1) with SplitEvenly and
  // leaves in the primary's .grad the gradient of the batch's mean loss.
  // REQUIRES: the primary's gradients are zero or undefined (zero_grad()).
  // Throws what libtorch throws, on this thread, after all replicas stopped.
  StepStats ForwardBackward(const at::Tensor& x, const at::Tensor& y);

  // Copies the primary's parameters to the other replicas.
  void Broadcast();

 private:
  struct Replica;
  void RunShard(int index, const at::Tensor& x, const at::Tensor& y);
  void ReduceGradients(int64_t batch);

  LossKind loss_;
  std::vector<MetricKind> metrics_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::unique_ptr<WorkerPool> pool_;  // one thread per replica
};

}  // namespace yard::trainer
