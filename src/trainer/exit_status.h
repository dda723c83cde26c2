// Exit codes of yard-train, and how a Status maps to one.
#pragma once

#include "common/status.h"

namespace yard::trainer {

enum ExitStatus : int {
  kExitSuccess = 0,
  kExitFailure = 1,   // training started and then failed (I/O, libtorch)
  kExitBadInput = 2,  // refused before any training: flags, data, model, fit_kwargs
  // Stopped for a spot interruption notice after writing a checkpoint to
  // resume from (EX_TEMPFAIL: try again later).
  kExitPreempted = 75,
};

// kInvalidArgument and kNotFound are the user's to fix: kExitBadInput.
// kCancelled is the stop for a notice: kExitPreempted. Everything else is
// kExitFailure.
inline ExitStatus ExitStatusFor(const Status& s) {
  if (s.ok()) return kExitSuccess;
  if (s.code() == Code::kCancelled) return kExitPreempted;
  if (s.code() == Code::kInvalidArgument || s.code() == Code::kNotFound) return kExitBadInput;
  return kExitFailure;
}

}  // namespace yard::trainer
