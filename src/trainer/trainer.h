// Trainer: trains a TorchScript module on .npy data as yard-train's flags
// and fit_kwargs say. libtorch stays behind the pimpl: this header is
// included by main.cc, which does not compile torch headers.
#pragma once

#include <cstdio>
#include <memory>

#include "common/status.h"
#include "trainer/fit_options.h"
#include "trainer/flags.h"

namespace yard::trainer {

class Trainer {
 public:
  // Reads the data, loads the module (or the --resume-from checkpoint and
  // its optimizer state), runs the module once on a few training (and
  // validation) rows to check that inputs, outputs, targets and loss fit
  // together, and opens the outputs. Nothing is trained yet. Errors:
  // kInvalidArgument / kNotFound for input the user must fix (yard-train
  // exits 2), others for failures of the machine. Progress lines go to `out`.
  static StatusOr<std::unique_ptr<Trainer>> Create(const TrainFlags& flags, const FitOptions& fit,
                                                   std::FILE* out);
  ~Trainer();

  // Trains the remaining epochs up to flags.epochs, reporting and
  // checkpointing after each, then saves the module to flags.output.
  // Call once.
  Status Run();

 private:
  struct Impl;
  explicit Trainer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace yard::trainer
