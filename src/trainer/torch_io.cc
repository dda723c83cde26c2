#include "trainer/torch_io.h"

#include <cstdio>
#include <filesystem>

#include "common/files.h"

namespace yard::trainer {
namespace {

// 2: adds yard_step and the partial epoch's sums (mid-epoch checkpoints).
constexpr int64_t kStateVersion = 2;

at::ScalarType ScalarTypeOf(NpyDType t) {
  switch (t) {
    case NpyDType::kFloat32:
      return at::kFloat;
    case NpyDType::kFloat64:
      return at::kDouble;
    case NpyDType::kInt32:
      return at::kInt;
    case NpyDType::kInt64:
      return at::kLong;
  }
  return at::kFloat;
}

// Class ids: int64, integral, >= 0 (float labels holding whole numbers pass).
StatusOr<at::Tensor> ClassIds(const at::Tensor& y, const std::string& what) {
  if (y.dim() == 2 && y.size(1) == 1) return ClassIds(y.view({y.size(0)}), what);
  if (y.dim() != 1) {
    return InvalidArgument(what + ": class-id targets must be 1-D, got shape " +
                           ShapeString(y.sizes()));
  }
  if (y.is_floating_point() && !y.eq(y.floor()).all().item<bool>()) {
    return InvalidArgument(
        what + ": targets must be whole class ids for this loss, got fractional values");
  }
  at::Tensor ids = y.to(at::kLong);
  if (ids.numel() > 0 && ids.min().item<int64_t>() < 0) {
    return InvalidArgument(what + ": class ids must be >= 0, found " +
                           std::to_string(ids.min().item<int64_t>()));
  }
  return ids;
}

// The step and the partial epoch's sums of a version 2 state.
Status ReadPartial(torch::serialize::InputArchive& archive, const std::string& state,
                   TrainingPoint* point) {
  return TorchGuard(
      "reading " + state,
      [&] {
        c10::IValue step, rows, loss_sum;
        at::Tensor sums;
        archive.read("yard_step", step);
        archive.read("yard_partial_rows", rows);
        archive.read("yard_partial_loss_sum", loss_sum);
        archive.read("yard_partial_metric_sums", sums, /*is_buffer=*/true);
        point->step = step.toInt();
        point->partial.rows = rows.toInt();
        point->partial.loss_sum = loss_sum.toDouble();
        sums = sums.contiguous();
        point->partial.metric_sums.assign(sums.data_ptr<double>(),
                                          sums.data_ptr<double>() + sums.numel());
      },
      Code::kInvalidArgument);
}

Status RenameInto(const std::string& tmp, const std::string& path) {
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  return ec ? Internal("renaming " + tmp + " to " + path + ": " + ec.message()) : Status::Ok();
}

}  // namespace

std::string ShapeString(at::IntArrayRef sizes) {
  std::string s = "[";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

std::string TorchMessage(const std::exception& e) {
  const auto* c10 = dynamic_cast<const c10::Error*>(&e);
  std::string m = c10 ? c10->what_without_backtrace() : e.what();
  if (m.find("TorchScript interpreter") != std::string::npos) {
    // "The following operation failed in the TorchScript interpreter.\n
    // Traceback ...\nRuntimeError: <the actual message>\n": keep the last.
    size_t err = m.rfind("Error: ");
    if (err != std::string::npos) m = m.substr(err + 7);
  }
  size_t nl = m.find('\n');
  return nl == std::string::npos ? m : m.substr(0, nl);
}

StatusOr<torch::jit::Module> LoadModule(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return NotFound(path + ": no such file");
  try {
    return torch::jit::load(path, torch::kCPU);
  } catch (const std::exception& e) {
    return InvalidArgument(path +
                           " was saved by a different torch version or is not a TorchScript file: "
                           "save it with torch.jit.script(model).save(path) using torch " +
                           std::to_string(TORCH_VERSION_MAJOR) + "." +
                           std::to_string(TORCH_VERSION_MINOR) +
                           " (libtorch said: " + TorchMessage(e) + ")");
  }
}

at::Tensor TensorFromNpy(NpyArray&& a) {
  auto* owner = new NpyData(std::move(a.data));
  return torch::from_blob(
      owner->data(), a.shape, [owner](void*) { delete owner; },
      at::TensorOptions().dtype(ScalarTypeOf(a.dtype)));
}

StatusOr<Dataset> MakeDataset(NpyArray x, NpyArray y, LossKind loss, at::ScalarType float_type,
                              const std::string& what) {
  if (x.rows() != y.rows()) {
    return InvalidArgument(what + ": inputs have " + std::to_string(x.rows()) +
                           " rows but targets have " + std::to_string(y.rows()) +
                           "; they must match");
  }
  if (x.rows() == 0) return InvalidArgument(what + ": no samples (0 rows)");
  Dataset d;
  d.rows = x.rows();
  d.x = TensorFromNpy(std::move(x)).to(float_type).contiguous();
  at::Tensor targets = TensorFromNpy(std::move(y));
  if (LossTakesClassIds(loss)) {
    YARD_ASSIGN_OR_RETURN(d.y, ClassIds(targets, what));
  } else {
    d.y = targets.to(float_type).contiguous();
  }
  return d;
}

Status FitTargetsToOutput(LossKind loss, const at::Tensor& out, Dataset* d,
                          const std::string& what) {
  if (out.dim() < 1 || out.size(0) > d->rows) {
    return InvalidArgument(what + ": the model's output has shape " + ShapeString(out.sizes()) +
                           "; its first axis must be the batch");
  }
  if (LossTakesClassIds(loss)) {
    if (out.dim() != 2) {
      return InvalidArgument(what + ": loss " + std::string(LossName(loss)) +
                             " needs outputs of shape "
                             "[batch, classes], the model gives " +
                             ShapeString(out.sizes()));
    }
    int64_t top = d->y.max().item<int64_t>();
    if (top >= out.size(1)) {
      return InvalidArgument(what + ": class id " + std::to_string(top) +
                             " but the model has only " + std::to_string(out.size(1)) +
                             " outputs (loss " + LossName(loss) + ")");
    }
    return Status::Ok();
  }
  std::vector<int64_t> want(out.sizes().begin(), out.sizes().end());
  want[0] = d->rows;
  int64_t per_row = out.numel() / std::max<int64_t>(out.size(0), 1);
  if (d->y.numel() != d->rows * per_row) {
    return InvalidArgument(what + ": targets have shape " + ShapeString(d->y.sizes()) +
                           " but the model's output per sample has shape " +
                           ShapeString(out.sizes().slice(1)));
  }
  d->y = d->y.reshape(want).contiguous();
  return Status::Ok();
}

at::Tensor ComputeLoss(LossKind loss, const at::Tensor& out, const at::Tensor& y) {
  switch (loss) {
    case LossKind::kCrossEntropy:
      return at::cross_entropy_loss(out, y);
    case LossKind::kNll:
      return at::nll_loss(out, y);
    case LossKind::kBceWithLogits:
      return at::binary_cross_entropy_with_logits(out, y);
    case LossKind::kMse:
      return at::mse_loss(out, y);
    case LossKind::kL1:
      return at::l1_loss(out, y);
    case LossKind::kSmoothL1:
      return at::smooth_l1_loss(out, y);
    case LossKind::kHuber:
      return at::huber_loss(out, y);
  }
  return {};
}

double ComputeMetric(MetricKind metric, LossKind loss, const at::Tensor& out, const at::Tensor& y) {
  at::NoGradGuard no_grad;
  at::Tensor o = out.detach();
  switch (metric) {
    case MetricKind::kAccuracy:
      if (LossTakesClassIds(loss)) {
        return static_cast<double>(o.argmax(1).eq(y).sum().item<int64_t>()) /
               static_cast<double>(y.numel());
      }
      return static_cast<double>(o.gt(0).eq(y.gt(0.5)).sum().item<int64_t>()) /
             static_cast<double>(y.numel());
    case MetricKind::kMae:
      return (o - y).abs().mean().item<double>();
    case MetricKind::kMse:
      return (o - y).square().mean().item<double>();
  }
  return 0;
}

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const FitOptions& o,
                                                       std::vector<at::Tensor> params) {
  using namespace torch::optim;
  switch (o.optimizer) {
    case OptimizerKind::kAdam:
      return std::make_unique<Adam>(params,
                                    AdamOptions(o.learning_rate).weight_decay(o.weight_decay));
    case OptimizerKind::kAdamW:
      return std::make_unique<AdamW>(params,
                                     AdamWOptions(o.learning_rate).weight_decay(o.weight_decay));
    case OptimizerKind::kSgd:
      return std::make_unique<SGD>(
          params, SGDOptions(o.learning_rate).momentum(o.momentum).weight_decay(o.weight_decay));
  }
  return nullptr;
}

std::string CheckpointPath(const std::string& dir, const TrainingPoint& point) {
  char name[64];
  if (point.step == 0) {
    std::snprintf(name, sizeof name, "epoch-%03lld.pt", static_cast<long long>(point.epoch));
  } else {
    std::snprintf(name, sizeof name, "epoch-%03lld-step-%05lld.pt",
                  static_cast<long long>(point.epoch), static_cast<long long>(point.step));
  }
  return dir + "/" + name;
}

std::string StatePathFor(const std::string& checkpoint_path) {
  std::filesystem::path p(checkpoint_path);
  return p.replace_extension(".state").string();
}

Status SaveModule(const torch::jit::Module& module, const std::string& path) {
  std::string tmp = path + ".tmp";
  std::string parent = std::filesystem::path(path).parent_path().string();
  if (!parent.empty()) YARD_RETURN_IF_ERROR(MakeDirs(parent));
  YARD_RETURN_IF_ERROR(TorchGuard("saving " + path, [&] {
    if (module.parameters().size() > 0 && !(*module.parameters().begin()).is_cpu()) {
      torch::jit::Module copy = module.clone();  // so that it loads without a GPU
      copy.to(torch::kCPU);
      copy.save(tmp);
    } else {
      module.save(tmp);
    }
  }));
  return RenameInto(tmp, path);
}

Status SaveCheckpoint(const torch::jit::Module& module, const torch::optim::Optimizer& optimizer,
                      OptimizerKind kind, const TrainingPoint& point, const std::string& dir) {
  YARD_RETURN_IF_ERROR(MakeDirs(dir));
  std::string path = CheckpointPath(dir, point);
  std::string state = StatePathFor(path);
  YARD_RETURN_IF_ERROR(TorchGuard("saving " + state, [&] {
    torch::serialize::OutputArchive archive;
    optimizer.save(archive);
    archive.write("yard_state_version", c10::IValue(kStateVersion));
    archive.write("yard_epoch", c10::IValue(point.epoch));
    archive.write("yard_optimizer", c10::IValue(std::string(OptimizerName(kind))));
    archive.write("yard_step", c10::IValue(point.step));
    archive.write("yard_partial_rows", c10::IValue(point.partial.rows));
    archive.write("yard_partial_loss_sum", c10::IValue(point.partial.loss_sum));
    std::vector<double> sums = point.partial.metric_sums;
    archive.write(
        "yard_partial_metric_sums",
        torch::from_blob(sums.data(), {static_cast<int64_t>(sums.size())}, at::kDouble).clone(),
        /*is_buffer=*/true);
    archive.save_to(state + ".tmp");
  }));
  YARD_RETURN_IF_ERROR(RenameInto(state + ".tmp", state));
  return SaveModule(module, path);
}

StatusOr<TrainingPoint> LoadTrainingState(const std::string& checkpoint_path, OptimizerKind kind,
                                          size_t metrics, torch::optim::Optimizer* optimizer) {
  std::string state = StatePathFor(checkpoint_path);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(state, ec)) {
    return InvalidArgument("--resume-from " + checkpoint_path + ": no optimizer state beside it (" +
                           state + "); resume from a checkpoint written by yard-train");
  }
  torch::serialize::InputArchive archive;
  c10::IValue version, epoch, name;
  YARD_RETURN_IF_ERROR(TorchGuard(
      "reading " + state,
      [&] {
        archive.load_from(state, torch::kCPU);
        archive.read("yard_state_version", version);
        archive.read("yard_epoch", epoch);
        archive.read("yard_optimizer", name);
      },
      Code::kInvalidArgument));
  if (version.toInt() != 1 && version.toInt() != kStateVersion) {
    return InvalidArgument(state + ": state format version " + std::to_string(version.toInt()) +
                           " is not supported (this yard-train reads version " +
                           std::to_string(kStateVersion) + ")");
  }
  if (name.toStringRef() != OptimizerName(kind)) {
    return InvalidArgument(state + ": written for optimizer " + name.toStringRef() +
                           ", but fit_kwargs asks for " + OptimizerName(kind));
  }
  YARD_RETURN_IF_ERROR(TorchGuard(
      "restoring optimizer state from " + state, [&] { optimizer->load(archive); },
      Code::kInvalidArgument));
  TrainingPoint point;
  point.epoch = epoch.toInt();
  if (version.toInt() >= 2) YARD_RETURN_IF_ERROR(ReadPartial(archive, state, &point));
  if (point.step > 0 && point.partial.metric_sums.size() != metrics) {
    return InvalidArgument(state + ": a mid-epoch checkpoint with " +
                           std::to_string(point.partial.metric_sums.size()) +
                           " metrics, but fit_kwargs asks for " + std::to_string(metrics));
  }
  return point;
}

}  // namespace yard::trainer
