#include "trainer/data_parallel.h"

#include "trainer/batching.h"
#include "trainer/torch_io.h"

namespace yard::trainer {

struct ReplicaSet::Replica {
  torch::jit::Module module;
  torch::jit::Method forward;
  std::vector<at::Tensor> params;
  c10::Device device;
  int64_t offset = 0, rows = 0;  // this step's shard
  StepStats stats;
  std::exception_ptr error;

  Replica(torch::jit::Module m, c10::Device d)
      : module(std::move(m)), forward(module.get_method("forward")), device(d) {
    for (const at::Tensor& p : module.parameters()) params.push_back(p);
  }
};

namespace {

// A deep copy whose parameters are leaves of their own: Module::clone copies
// tensors with autograd on, which would send the copy's gradients back into
// the original's.
torch::jit::Module CloneLeaf(const torch::jit::Module& m, c10::Device device) {
  torch::jit::Module copy;
  {
    at::NoGradGuard no_grad;
    copy = m.clone();
    copy.to(device);
  }
  for (at::Tensor p : copy.parameters()) p.requires_grad_(true);
  return copy;
}

}  // namespace

void StepStats::Add(const StepStats& o) {
  loss_sum += o.loss_sum;
  rows += o.rows;
  if (metric_sums.size() < o.metric_sums.size()) metric_sums.resize(o.metric_sums.size());
  for (size_t i = 0; i < o.metric_sums.size(); ++i) metric_sums[i] += o.metric_sums[i];
}

ReplicaSet::ReplicaSet(torch::jit::Module primary, const std::vector<c10::Device>& devices,
                       LossKind loss, std::vector<MetricKind> metrics)
    : loss_(loss), metrics_(std::move(metrics)) {
  replicas_.push_back(std::make_unique<Replica>(primary, devices[0]));
  for (size_t i = 1; i < devices.size(); ++i) {
    replicas_.push_back(std::make_unique<Replica>(CloneLeaf(primary, devices[i]), devices[i]));
  }
  if (replicas_.size() > 1) pool_ = std::make_unique<WorkerPool>(size());
}

ReplicaSet::~ReplicaSet() = default;

StepStats ReplicaSet::ForwardBackward(const at::Tensor& x, const at::Tensor& y) {
  const int64_t batch = x.size(0);
  if (replicas_.size() == 1) {
    replicas_[0]->rows = batch;
    RunShard(0, x, y);
    if (replicas_[0]->error) std::rethrow_exception(replicas_[0]->error);
    return replicas_[0]->stats;
  }
  std::vector<int64_t> shards = SplitEvenly(batch, size());
  int64_t offset = 0;
  for (int i = 0; i < size(); ++i) {
    replicas_[i]->offset = offset;
    replicas_[i]->rows = shards[i];
    offset += shards[i];
  }
  pool_->RunAll([&](int i) { RunShard(i, x, y); });
  StepStats total;
  for (const auto& r : replicas_) {
    if (r->error) std::rethrow_exception(r->error);
    if (r->rows > 0) total.Add(r->stats);
  }
  ReduceGradients(batch);
  return total;
}

void ReplicaSet::RunShard(int index, const at::Tensor& x, const at::Tensor& y) {
  Replica& r = *replicas_[index];
  r.error = nullptr;
  if (r.rows == 0) return;
  try {
    if (index > 0) {
      for (at::Tensor& p : r.params) {
        if (p.grad().defined()) p.mutable_grad().zero_();
      }
    }
    at::Tensor xs = x.narrow(0, r.offset, r.rows).to(r.device, /*non_blocking=*/true);
    at::Tensor ys = y.narrow(0, r.offset, r.rows).to(r.device, /*non_blocking=*/true);
    at::Tensor out = r.forward({xs}).toTensor();
    at::Tensor loss = ComputeLoss(loss_, out, ys);
    loss.backward();
    r.stats.rows = r.rows;
    r.stats.loss_sum = loss.item<double>() * static_cast<double>(r.rows);
    r.stats.metric_sums.resize(metrics_.size());
    for (size_t m = 0; m < metrics_.size(); ++m) {
      r.stats.metric_sums[m] =
          ComputeMetric(metrics_[m], loss_, out, ys) * static_cast<double>(r.rows);
    }
  } catch (...) {
    r.error = std::current_exception();
  }
}

void ReplicaSet::ReduceGradients(int64_t batch) {
  at::NoGradGuard no_grad;
  Replica& primary = *replicas_[0];
  const double w0 = static_cast<double>(primary.rows) / static_cast<double>(batch);
  for (size_t p = 0; p < primary.params.size(); ++p) {
    at::Tensor& param = primary.params[p];
    bool any = param.grad().defined();
    for (size_t i = 1; i < replicas_.size(); ++i) {
      any |= replicas_[i]->rows > 0 && replicas_[i]->params[p].grad().defined();
    }
    if (!any) continue;  // unused parameter: leave it to the optimizer as one device would
    if (!param.grad().defined()) param.mutable_grad() = at::zeros_like(param);
    at::Tensor g = param.mutable_grad();
    g.mul_(w0);
    for (size_t i = 1; i < replicas_.size(); ++i) {
      const Replica& r = *replicas_[i];
      const at::Tensor& gi = r.params[p].grad();
      if (r.rows == 0 || !gi.defined()) continue;
      g.add_(gi.to(param.device()), static_cast<double>(r.rows) / static_cast<double>(batch));
    }
  }
}

void ReplicaSet::Broadcast() {
  at::NoGradGuard no_grad;
  const Replica& primary = *replicas_[0];
  for (size_t i = 1; i < replicas_.size(); ++i) {
    for (size_t p = 0; p < primary.params.size(); ++p) {
      replicas_[i]->params[p].copy_(primary.params[p], /*non_blocking=*/true);
    }
  }
}

}  // namespace yard::trainer
