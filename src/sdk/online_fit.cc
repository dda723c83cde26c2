// The SDK's torch face: tensors become .npy arrays, the module a file, and
// the trained file a module again. Everything else is torch-free
// (fit_job.cc). This and trainer/torch_io.cc are the SDK's only TUs that
// include torch headers; both use trainer/torch_includes.h as their
// precompiled header.
#include <cstring>

#include "sdk/fit_job.h"
#include "sdk/trainyard.h"
#include "trainer/torch_io.h"

namespace trainyard {
namespace {

using internal::JobInput;
using internal::NpyArray;
using yard::InvalidArgument;
using yard::Status;
using yard::StatusOr;
using yard::trainer::NpyDType;

[[noreturn]] void Throw(const Status& s, const std::string& job_id = "") {
  throw FitError(yard::CodeName(s.code()), s.message(), job_id);
}

void ThrowIfError(const Status& s) {
  if (!s.ok()) Throw(s);
}

StatusOr<NpyDType> NpyTypeOf(const std::string& name, at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return NpyDType::kFloat32;
    case at::kDouble:
      return NpyDType::kFloat64;
    case at::kInt:
      return NpyDType::kInt32;
    case at::kLong:
      return NpyDType::kInt64;
    default:
      return InvalidArgument(name + " has dtype " + std::string(c10::toString(t)) +
                             ": use float32, float64, int32 or int64 (e.g. " + name +
                             ".to(torch::kFloat32), or torch::kInt64 for class ids)");
  }
}

// A copy of `t`'s values in C order on the CPU.
StatusOr<NpyArray> ToNpy(const std::string& name, const torch::Tensor& t) {
  if (!t.defined()) return InvalidArgument(name + " is an undefined tensor");
  if (t.dim() == 0)
    return InvalidArgument(name + " must have at least one dimension (one row per sample)");
  NpyArray a;
  YARD_ASSIGN_OR_RETURN(a.dtype, NpyTypeOf(name, t.scalar_type()));
  at::Tensor cpu = t.detach().to(at::kCPU).contiguous();
  a.shape = cpu.sizes().vec();
  a.data.resize(cpu.nbytes());
  if (!a.data.empty()) std::memcpy(a.data.data(), cpu.data_ptr(), a.data.size());
  return a;
}

NpyArray ToNpyOrThrow(const std::string& name, const torch::Tensor& t) {
  StatusOr<NpyArray> a = ToNpy(name, t);
  ThrowIfError(a.status());
  return std::move(a).value();
}

JobInput MakeInput(const torch::jit::Module& model, const torch::Tensor& x, const torch::Tensor& y,
                   const FitOptions& o) {
  if (!model.find_method("forward"))
    Throw(
        InvalidArgument("the module has no forward method: define one (Module::define) or "
                        "script a model that has one"));
  JobInput in;
  in.save_model = [model](const std::string& path) {
    return yard::trainer::TorchGuard("saving the module to " + path, [&] { model.save(path); });
  };
  in.train_x = ToNpyOrThrow("train_X", x);
  in.train_y = ToNpyOrThrow("train_Y", y);
  if (o.validation_data) {
    in.validation.emplace(ToNpyOrThrow("validation_data.first", o.validation_data->first),
                          ToNpyOrThrow("validation_data.second", o.validation_data->second));
  }
  in.machine_ids = o.machine_ids;
  in.batch_size = o.batch_size;
  in.epochs = o.epochs;
  in.description = o.description;
  in.cool_down_period_s = o.cool_down_period_s;
  in.fit_kwargs = o.fit_kwargs.is_null() ? nlohmann::json::object() : o.fit_kwargs;
  in.ckpt_dir = o.directory_to_save_ckpt;
  in.log_dir = o.directory_to_save_log;
  in.wait_request_s = o.wait_request_s;
  in.wait_new_job_create_s = o.wait_new_job_create_s;
  in.wait_new_job_create_interval = o.wait_new_job_create_interval;
  in.seed = o.seed;
  in.record = o.record;
  in.packages = {{"libtorch", TORCH_VERSION}};
  in.connection = o.connection;
  in.on_progress = o.on_progress ? o.on_progress : ProgressCallback(PrintProgress);
  return in;
}

}  // namespace

FitResult online_fit(const torch::jit::Module& model, const torch::Tensor& train_X,
                     const torch::Tensor& train_Y, const FitOptions& options) {
  JobInput in = MakeInput(model, train_X, train_Y, options);
  ThrowIfError(internal::CheckInput(in));
  StatusOr<internal::Submitted> job = internal::Submit(in);
  ThrowIfError(job.status());
  FitResult result;
  result.job_id = job->job_id;
  result.transfer = job->transfer;
  StatusOr<internal::JobOutcome> outcome = internal::Finish(*job, in);
  if (!outcome.ok()) Throw(outcome.status(), result.job_id);
  result.state = outcome->state;
  result.message = outcome->message;
  result.last_output = outcome->last_output;
  result.record_archive = outcome->record_path;
  if (outcome->model_path.empty()) return result;
  StatusOr<torch::jit::Module> trained = yard::trainer::LoadModule(outcome->model_path);
  if (!trained.ok()) Throw(trained.status(), result.job_id);
  result.model = std::move(trained).value();
  result.history = std::move(outcome->history);
  return result;
}

}  // namespace trainyard
