// yard-train's command line: a table of flags, each with its help text and,
// for the output locations, the environment variable that supplies its
// default (set by the Trainyard agent for every job).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"

namespace yard::trainer {

struct TrainFlags {
  std::string model;                           // TorchScript file
  std::string train_x, train_y, val_x, val_y;  // .npy files; val_* both or neither
  int64_t epochs = 0;                          // total epochs, counting those before a resume
  int64_t batch_size = 0;
  int devices = 0;  // 0: every CUDA device, or 1 without CUDA
  int threads = 0;  // 0: the cores this process may run on
  uint64_t seed = 0;
  std::string fit_kwargs = "{}";
  std::string checkpoint_dir;     // "" : no checkpoints
  std::string log_dir;            // "" : no TensorBoard events
  std::string metrics;            // "" : no metrics file
  std::string resume_from;        // "" : start from the model file
  std::string preemption_notice;  // file whose appearance is a notice (as SIGUSR1 is)
  std::string output;             // always set after parsing
  bool help = false;              // --help: print Usage() and stop
};

// Returns the value of an environment variable, "" when unset.
using EnvLookup = std::function<std::string(const char* name)>;
// Reads the real environment.
std::string RealEnv(const char* name);

// Parses `args` (without argv[0]); "--flag value" and "--flag=value" both
// work. Flags not given take their defaults from `env` (YARD_CHECKPOINT_DIR,
// YARD_LOG_DIR, YARD_METRICS, YARD_RESUME_FROM, YARD_PREEMPTION_NOTICE; --output from
// YARD_OUTPUT_DIR/model.pt, else ./model_out.pt). Errors (kInvalidArgument):
// unknown flags, missing values or required flags, numbers out of range,
// only one of --val-x/--val-y.
StatusOr<TrainFlags> ParseFlags(const std::vector<std::string>& args, const EnvLookup& env);

// The help text: synopsis and one line per flag.
std::string Usage();

}  // namespace yard::trainer
