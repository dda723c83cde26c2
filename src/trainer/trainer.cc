#include "trainer/trainer.h"

#include <chrono>
#include <filesystem>
#include <optional>

#include "common/clock.h"
#include "trainer/batching.h"
#include "trainer/data_parallel.h"
#include "trainer/preemption.h"
#include "trainer/reporter.h"
#include "trainer/runtime_env.h"
#include "trainer/torch_io.h"

namespace yard::trainer {
namespace {

constexpr int64_t kEvalChunk = 4096;  // validation rows per forward pass

StatusOr<std::vector<c10::Device>> PickDevices(int requested) {
  if (!torch::cuda::is_available()) {
    return std::vector<c10::Device>(std::max(requested, 1), c10::Device(c10::kCPU));
  }
  int count = static_cast<int>(torch::cuda::device_count());
  if (requested > count) {
    return InvalidArgument("--devices " + std::to_string(requested) + ": only " +
                           std::to_string(count) + " CUDA devices are visible");
  }
  std::vector<c10::Device> devices;
  for (int i = 0; i < (requested ? requested : count); ++i) devices.emplace_back(c10::kCUDA, i);
  return devices;
}

at::ScalarType FloatTypeOf(const torch::jit::Module& m) {
  for (const at::Tensor& p : m.parameters()) {
    if (p.is_floating_point()) return p.scalar_type();
  }
  return at::kFloat;
}

StatusOr<Dataset> LoadSplit(const std::string& x_path, const std::string& y_path, LossKind loss,
                            at::ScalarType float_type, const std::string& what) {
  YARD_ASSIGN_OR_RETURN(NpyArray x, ReadNpy(x_path));
  YARD_ASSIGN_OR_RETURN(NpyArray y, ReadNpy(y_path));
  StatusOr<Dataset> d = Status(Code::kInternal, "unset");
  YARD_RETURN_IF_ERROR(TorchGuard(
      what,
      [&] {
        d = MakeDataset(std::move(x), std::move(y), loss, float_type,
                        what + " (" + x_path + ", " + y_path + ")");
      },
      Code::kInvalidArgument));
  return d;
}

// Runs the module on the first rows of `d` and checks that outputs, targets
// and loss fit; reshapes d->y to the output's per-row shape.
Status Probe(torch::jit::Module& m, c10::Device device, LossKind loss, int64_t rows, Dataset* d,
             const std::string& what) {
  at::NoGradGuard no_grad;
  at::Tensor out;
  rows = std::min(rows, d->rows);
  // Eval mode: a training-mode pass would move BatchNorm statistics.
  std::string inputs =
      "the model cannot take the " + what + " inputs (shape " + ShapeString(d->x.sizes()) + ")";
  YARD_RETURN_IF_ERROR(TorchGuard(
      inputs,
      [&] {
        m.eval();
        out = m.forward({d->x.narrow(0, 0, rows).to(device)}).toTensor();
        m.train();
      },
      Code::kInvalidArgument));
  YARD_RETURN_IF_ERROR(FitTargetsToOutput(loss, out, d, what));
  return TorchGuard(
      std::string("loss ") + LossName(loss) + " cannot take the model's output and the " + what +
          " targets",
      [&] { ComputeLoss(loss, out, d->y.narrow(0, 0, rows).to(device)); }, Code::kInvalidArgument);
}

std::string DevicesText(const std::vector<c10::Device>& devices) {
  std::string s;
  for (const auto& d : devices) s += (s.empty() ? "" : ", ") + d.str();
  return s;
}

}  // namespace

struct Trainer::Impl {
  TrainFlags flags;
  FitOptions fit;
  std::FILE* out = nullptr;
  torch::jit::Module module;
  std::vector<c10::Device> devices;
  Dataset train, val;
  bool has_val = false;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::unique_ptr<ReplicaSet> replicas;
  std::unique_ptr<Reporter> reporter;
  TrainingPoint resumed;  // restored from --resume-from
  std::unique_ptr<NoticeWatch> notice;
  int threads = 1;  // per replica
  RealClock clock;

  Status Init();
  Status LoadModel();
  Status LoadData();
  Status SetUpTraining();
  void Announce();
  // Trains epoch `from.epoch + 1` from its step `from.step` on. On a spot
  // interruption notice: a mid-epoch checkpoint, then Cancelled.
  Status TrainEpoch(const TrainingPoint& from, EpochResult* r);
  bool Noticed() { return !flags.checkpoint_dir.empty() && notice->Noticed(); }
  Status StopForNotice(const TrainingPoint& at);
  StepStats Evaluate(const Dataset& d);
  void AddValues(const std::string& prefix, const StepStats& s, EpochResult* r) const;
  Status Run();
};

Status Trainer::Impl::Init() {
  // First: a notice during the data loading must not end the process.
  notice = std::make_unique<NoticeWatch>(flags.preemption_notice);
  YARD_ASSIGN_OR_RETURN(devices, PickDevices(flags.devices));
  // Replicas run concurrently: each gets its share of the threads.
  threads = ThreadsPerReplica(flags.threads, static_cast<int>(devices.size()));
  at::set_num_threads(threads);
  SetOpenBlasThreads(threads);
  YARD_RETURN_IF_ERROR(LoadModel());
  YARD_RETURN_IF_ERROR(LoadData());
  YARD_RETURN_IF_ERROR(SetUpTraining());
  YARD_ASSIGN_OR_RETURN(reporter, Reporter::Open(flags.metrics, flags.log_dir, out, &clock));
  return Status::Ok();
}

Status Trainer::Impl::LoadModel() {
  const std::string& path = flags.resume_from.empty() ? flags.model : flags.resume_from;
  YARD_ASSIGN_OR_RETURN(module, LoadModule(path));
  if (!flags.resume_from.empty()) {
    // The model file must still be valid: a resumed job is the same job.
    YARD_RETURN_IF_ERROR(LoadModule(flags.model).status());
  }
  return TorchGuard("preparing the model", [&] {
    module.train();
    module.to(devices[0]);
  });
}

Status Trainer::Impl::LoadData() {
  at::ScalarType ft = FloatTypeOf(module);
  YARD_ASSIGN_OR_RETURN(train,
                        LoadSplit(flags.train_x, flags.train_y, fit.loss, ft, "training data"));
  has_val = !flags.val_x.empty();
  if (has_val) {
    YARD_ASSIGN_OR_RETURN(val,
                          LoadSplit(flags.val_x, flags.val_y, fit.loss, ft, "validation data"));
  }
  YARD_RETURN_IF_ERROR(Probe(module, devices[0], fit.loss, flags.batch_size, &train, "training"));
  if (has_val)
    YARD_RETURN_IF_ERROR(Probe(module, devices[0], fit.loss, flags.batch_size, &val, "validation"));
  return Status::Ok();
}

Status Trainer::Impl::SetUpTraining() {
  std::vector<at::Tensor> params;
  for (const at::Tensor& p : module.parameters()) params.push_back(p);
  if (params.empty())
    return InvalidArgument(flags.model + ": the module has no parameters to train");
  optimizer = MakeOptimizer(fit, params);
  if (!flags.resume_from.empty()) {
    YARD_ASSIGN_OR_RETURN(resumed, LoadTrainingState(flags.resume_from, fit.optimizer,
                                                     fit.metrics.size(), optimizer.get()));
  }
  return TorchGuard("creating the replicas", [&] {
    replicas = std::make_unique<ReplicaSet>(module, devices, fit.loss, fit.metrics);
  });
}

void Trainer::Impl::Announce() {
  int n = static_cast<int>(devices.size());
  std::vector<int64_t> shards = SplitEvenly(std::min(flags.batch_size, train.rows), n);
  if (flags.batch_size % n != 0) {
    reporter->Say("warning: --batch-size " + std::to_string(flags.batch_size) +
                  " is not a multiple of " + std::to_string(n) + " devices; shards are uneven " +
                  ShapeString(shards) +
                  " (gradients are weighted by shard size, so results match one device)");
  }
  std::string text = "Training on " + std::to_string(n) + (n == 1 ? " replica" : " replicas") +
                     " (" + DevicesText(devices) + "), " + std::to_string(threads) +
                     " torch thread(s) each; first batch of " +
                     std::to_string(std::min(flags.batch_size, train.rows)) + " split " +
                     ShapeString(shards);
  Status s = reporter->Replicas(n, shards, text);
  if (!s.ok()) reporter->Say("warning: " + s.ToString());
}

Status Trainer::Impl::TrainEpoch(const TrainingPoint& from, EpochResult* r) {
  int64_t epoch = from.epoch + 1;
  StepStats total = from.partial;
  if (total.metric_sums.empty()) total.metric_sums.assign(fit.metrics.size(), 0.0);
  std::optional<TrainingPoint> stop_at;
  auto start = std::chrono::steady_clock::now();
  YARD_RETURN_IF_ERROR(TorchGuard("training epoch " + std::to_string(epoch), [&] {
    torch::manual_seed(flags.seed + static_cast<uint64_t>(epoch));  // dropout repeats on resume
    std::vector<int64_t> order = EpochOrder(train.rows, flags.seed, epoch, fit.shuffle);
    at::Tensor index = torch::from_blob(order.data(), {train.rows}, at::kLong);
    // One gather per epoch; batches are then contiguous views of it.
    at::Tensor x = fit.shuffle ? train.x.index_select(0, index) : train.x;
    at::Tensor y = fit.shuffle ? train.y.index_select(0, index) : train.y;
    // The order is a function of (seed, epoch): a resumed epoch goes on
    // with the very batches an uninterrupted one would have had.
    for (int64_t step = from.step; step * flags.batch_size < train.rows; ++step) {
      int64_t begin = step * flags.batch_size;
      int64_t len = std::min(flags.batch_size, train.rows - begin);
      optimizer->zero_grad();
      total.Add(replicas->ForwardBackward(x.narrow(0, begin, len), y.narrow(0, begin, len)));
      optimizer->step();
      replicas->Broadcast();
      if (Noticed()) {
        stop_at = TrainingPoint{from.epoch, step + 1, total};
        break;
      }
    }
  }));
  if (stop_at) return StopForNotice(*stop_at);
  r->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r->samples_per_s =
      static_cast<double>(total.rows - from.partial.rows) / std::max(r->seconds, 1e-9);
  AddValues("", total, r);
  return Status::Ok();
}

Status Trainer::Impl::StopForNotice(const TrainingPoint& at) {
  std::string path = CheckpointPath(flags.checkpoint_dir, at);
  if (at.step > 0)
    YARD_RETURN_IF_ERROR(
        SaveCheckpoint(module, *optimizer, fit.optimizer, at, flags.checkpoint_dir));
  int64_t steps = (train.rows + flags.batch_size - 1) / flags.batch_size;
  reporter->Say(at.step > 0
                    ? "Spot interruption notice: saved " +
                          std::filesystem::path(path).filename().string() + " (epoch " +
                          std::to_string(at.epoch + 1) + ", step " + std::to_string(at.step) +
                          " of " + std::to_string(steps) + "); exiting for the requeue"
                    : "Spot interruption notice: " + std::to_string(at.epoch) +
                          " epochs done and checkpointed; exiting for the requeue");
  return Cancelled("stopped for a spot interruption notice");
}

StepStats Trainer::Impl::Evaluate(const Dataset& d) {
  at::NoGradGuard no_grad;
  module.eval();
  StepStats total;
  for (int64_t begin = 0; begin < d.rows; begin += kEvalChunk) {
    int64_t len = std::min(kEvalChunk, d.rows - begin);
    at::Tensor x = d.x.narrow(0, begin, len).to(devices[0]);
    at::Tensor y = d.y.narrow(0, begin, len).to(devices[0]);
    at::Tensor out = module.forward({x}).toTensor();
    StepStats s;
    s.rows = len;
    s.loss_sum = ComputeLoss(fit.loss, out, y).item<double>() * static_cast<double>(len);
    for (MetricKind m : fit.metrics)
      s.metric_sums.push_back(ComputeMetric(m, fit.loss, out, y) * len);
    total.Add(s);
  }
  module.train();
  return total;
}

void Trainer::Impl::AddValues(const std::string& prefix, const StepStats& s, EpochResult* r) const {
  double rows = static_cast<double>(std::max<int64_t>(s.rows, 1));
  r->values.emplace_back(prefix + "loss", s.loss_sum / rows);
  for (size_t i = 0; i < fit.metrics.size() && i < s.metric_sums.size(); ++i) {
    r->values.emplace_back(prefix + MetricName(fit.metrics[i]), s.metric_sums[i] / rows);
  }
}

Status Trainer::Impl::Run() {
  Announce();
  if (resumed.epoch >= flags.epochs) {
    reporter->Say("Nothing to train: " + flags.resume_from + " already ends epoch " +
                  std::to_string(resumed.epoch));
  } else if (resumed.step > 0) {
    reporter->Say("Resuming epoch " + std::to_string(resumed.epoch + 1) + " at step " +
                  std::to_string(resumed.step + 1) + " (" + flags.resume_from +
                  " was saved at a spot interruption notice)");
  }
  for (int64_t epoch = resumed.epoch + 1; epoch <= flags.epochs; ++epoch) {
    // Between epochs the last epoch's checkpoint holds everything.
    if (epoch > resumed.epoch + 1 && Noticed()) return StopForNotice(EpochEnd(epoch - 1));
    EpochResult r;
    r.epoch = epoch;
    r.epochs = flags.epochs;
    YARD_RETURN_IF_ERROR(
        TrainEpoch(epoch == resumed.epoch + 1 ? resumed : EpochEnd(epoch - 1), &r));
    if (has_val) {
      StepStats v;
      YARD_RETURN_IF_ERROR(TorchGuard("validating", [&] { v = Evaluate(val); }));
      AddValues("val_", v, &r);
    }
    YARD_RETURN_IF_ERROR(reporter->Epoch(r));
    if (!flags.checkpoint_dir.empty()) {
      YARD_RETURN_IF_ERROR(
          SaveCheckpoint(module, *optimizer, fit.optimizer, EpochEnd(epoch), flags.checkpoint_dir));
    }
  }
  YARD_RETURN_IF_ERROR(SaveModule(module, flags.output));
  reporter->Say("Saved the trained model to " + flags.output);
  return Status::Ok();
}

Trainer::Trainer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Trainer::~Trainer() = default;

StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const TrainFlags& flags, const FitOptions& fit,
                                                   std::FILE* out) {
  auto impl = std::make_unique<Impl>();
  impl->flags = flags;
  impl->fit = fit;
  impl->out = out;
  // Every libtorch call is guarded where it is made; this catches the rest.
  Status init;
  YARD_RETURN_IF_ERROR(TorchGuard("setting up", [&] { init = impl->Init(); }));
  YARD_RETURN_IF_ERROR(init);
  return std::unique_ptr<Trainer>(new Trainer(std::move(impl)));
}

Status Trainer::Run() {
  Status result;
  Status guard = TorchGuard("training", [&] { result = impl_->Run(); });
  return guard.ok() ? result : guard;
}

}  // namespace yard::trainer
