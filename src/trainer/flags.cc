#include "trainer/flags.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

namespace yard::trainer {
namespace {

struct Flag {
  const char* name;
  const char* metavar;
  const char* env;  // default from this variable, or nullptr
  const char* help;
  Status (*set)(TrainFlags*, const std::string&);
};

StatusOr<int64_t> ParseCount(const std::string& v, const char* name, int64_t max) {
  char* end = nullptr;
  errno = 0;
  long long n = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0 || n < 1 || n > max) {
    return InvalidArgument(std::string(name) + " must be an integer from 1 to " +
                           std::to_string(max) + ", not \"" + v + "\"");
  }
  return static_cast<int64_t>(n);
}

#define YARD_STRING_FLAG(field)             \
  [](TrainFlags* f, const std::string& v) { \
    f->field = v;                           \
    return Status::Ok();                    \
  }
#define YARD_COUNT_FLAG(field, name, max)                       \
  [](TrainFlags* f, const std::string& v) -> Status {           \
    YARD_ASSIGN_OR_RETURN(int64_t n, ParseCount(v, name, max)); \
    f->field = static_cast<decltype(f->field)>(n);              \
    return Status::Ok();                                        \
  }

const Flag kFlags[] = {
    {"--model", "PATH", nullptr,
     "TorchScript module to train (torch.jit.script(m).save(PATH)); required",
     YARD_STRING_FLAG(model)},
    {"--train-x", "X.npy", nullptr, "training inputs, first axis = samples; required",
     YARD_STRING_FLAG(train_x)},
    {"--train-y", "Y.npy", nullptr, "training targets, as many rows as X; required",
     YARD_STRING_FLAG(train_y)},
    {"--val-x", "X.npy", nullptr, "validation inputs (with --val-y)", YARD_STRING_FLAG(val_x)},
    {"--val-y", "Y.npy", nullptr, "validation targets (with --val-x)", YARD_STRING_FLAG(val_y)},
    {"--epochs", "N", nullptr, "total epochs, including those before --resume-from; required",
     YARD_COUNT_FLAG(epochs, "--epochs", 1'000'000)},
    {"--batch-size", "B", nullptr, "samples per optimizer step, split across devices; required",
     YARD_COUNT_FLAG(batch_size, "--batch-size", 1'000'000'000)},
    {"--devices", "N", nullptr, "replicas (default: CUDA devices, or 1 on CPU)",
     YARD_COUNT_FLAG(devices, "--devices", 1024)},
    {"--threads", "N", nullptr, "torch threads, shared by the replicas (default: cores available)",
     YARD_COUNT_FLAG(threads, "--threads", 4096)},
    {"--seed", "S", nullptr, "seed for shuffling and dropout (default 0)",
     [](TrainFlags* f, const std::string& v) -> Status {
       char* end = nullptr;
       f->seed = std::strtoull(v.c_str(), &end, 10);
       if (v.empty() || *end != '\0' || v[0] == '-')
         return InvalidArgument("--seed must be an integer >= 0");
       return Status::Ok();
     }},
    {"--fit-kwargs", "JSON", nullptr,
     "loss, optimizer, learning_rate, metrics, shuffle, momentum, weight_decay",
     YARD_STRING_FLAG(fit_kwargs)},
    {"--checkpoint-dir", "DIR", "YARD_CHECKPOINT_DIR", "epoch-NNN.pt (+ .state) after every epoch",
     YARD_STRING_FLAG(checkpoint_dir)},
    {"--log-dir", "DIR", "YARD_LOG_DIR", "TensorBoard event file", YARD_STRING_FLAG(log_dir)},
    {"--metrics", "FILE", "YARD_METRICS", "one JSON line per epoch is appended here",
     YARD_STRING_FLAG(metrics)},
    {"--resume-from", "CKPT", "YARD_RESUME_FROM",
     "an epoch-NNN.pt (or mid-epoch epoch-NNN-step-SSSSS.pt) checkpoint to continue from",
     YARD_STRING_FLAG(resume_from)},
    {"--preemption-notice", "FILE", "YARD_PREEMPTION_NOTICE",
     "on this file appearing (or SIGUSR1): checkpoint now, exit 75",
     YARD_STRING_FLAG(preemption_notice)},
    {"--output", "PATH", "YARD_OUTPUT_DIR",
     "trained module (default $YARD_OUTPUT_DIR/model.pt, else model_out.pt)",
     YARD_STRING_FLAG(output)},
};

#undef YARD_STRING_FLAG
#undef YARD_COUNT_FLAG

const Flag* FindFlag(const std::string& name) {
  for (const Flag& f : kFlags)
    if (name == f.name) return &f;
  return nullptr;
}

void ApplyEnvDefaults(const EnvLookup& env, TrainFlags* f) {
  auto fill = [&](std::string* field, const char* var) {
    if (field->empty()) *field = env(var);
  };
  fill(&f->checkpoint_dir, "YARD_CHECKPOINT_DIR");
  fill(&f->log_dir, "YARD_LOG_DIR");
  fill(&f->metrics, "YARD_METRICS");
  fill(&f->resume_from, "YARD_RESUME_FROM");
  fill(&f->preemption_notice, "YARD_PREEMPTION_NOTICE");
  // Trainyard restores a checkpoint with its siblings and may point at the
  // optimizer side file; the module is the .pt beside it.
  const std::string kState = ".state";
  if (f->resume_from.size() > kState.size() &&
      f->resume_from.compare(f->resume_from.size() - kState.size(), kState.size(), kState) == 0)
    f->resume_from.replace(f->resume_from.size() - kState.size(), kState.size(), ".pt");
  if (f->output.empty()) {
    std::string dir = env("YARD_OUTPUT_DIR");
    f->output = dir.empty() ? "model_out.pt" : dir + "/model.pt";
  }
}

Status CheckRequired(const TrainFlags& f) {
  std::string missing;
  auto need = [&](bool ok, const char* name) {
    if (!ok) missing += std::string(missing.empty() ? "" : ", ") + name;
  };
  need(!f.model.empty(), "--model");
  need(!f.train_x.empty(), "--train-x");
  need(!f.train_y.empty(), "--train-y");
  need(f.epochs > 0, "--epochs");
  need(f.batch_size > 0, "--batch-size");
  if (!missing.empty())
    return InvalidArgument("missing required flags: " + missing + " (see --help)");
  if (f.val_x.empty() != f.val_y.empty()) {
    return InvalidArgument("--val-x and --val-y go together: give both or neither");
  }
  return Status::Ok();
}

}  // namespace

std::string RealEnv(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

StatusOr<TrainFlags> ParseFlags(const std::vector<std::string>& args, const EnvLookup& env) {
  TrainFlags f;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--help" || args[i] == "-h") {
      f.help = true;
      return f;
    }
    size_t eq = args[i].find('=');
    std::string name = args[i].substr(0, eq);
    const Flag* flag = FindFlag(name);
    if (!flag) return InvalidArgument("unknown flag \"" + name + "\" (see --help)");
    if (eq == std::string::npos && i + 1 >= args.size()) {
      return InvalidArgument(name + " needs a value: " + name + " " + flag->metavar);
    }
    std::string value = eq == std::string::npos ? args[++i] : args[i].substr(eq + 1);
    YARD_RETURN_IF_ERROR(flag->set(&f, value));
  }
  YARD_RETURN_IF_ERROR(CheckRequired(f));
  ApplyEnvDefaults(env, &f);
  return f;
}

std::string Usage() {
  std::string out =
      "usage: yard-train --model model.pt --train-x X.npy --train-y Y.npy --epochs N --batch-size "
      "B\n"
      "                  [--val-x X.npy --val-y Y.npy] [--devices N] [--threads N] [--seed S]\n"
      "                  [--fit-kwargs JSON] [--checkpoint-dir D] [--log-dir D] [--metrics FILE]\n"
      "                  [--resume-from CKPT] [--output PATH]\n\n"
      "Trains a TorchScript module on .npy arrays. Exit status: 0 done, 1 failed while\n"
      "training, 2 bad input (refused before training).\n\n";
  for (const Flag& f : kFlags) {
    std::string lhs = std::string("  ") + f.name + " " + f.metavar;
    lhs.resize(std::max<size_t>(lhs.size() + 1, 26), ' ');
    out += lhs + f.help + (f.env ? std::string(" [$") + f.env + "]" : "") + "\n";
  }
  return out;
}

}  // namespace yard::trainer
