// fit_kwargs for a TorchScript module: the loss, optimizer and metrics that
// Keras users pass to compile(), plus fit()'s shuffle flag. Parsed and checked
// completely before any data is read or any training starts.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace yard::trainer {

enum class LossKind {
  kCrossEntropy,   // logits [N, C], class ids [N]
  kNll,            // log-probabilities [N, C], class ids [N]
  kBceWithLogits,  // logits, 0/1 targets of the same shape
  kMse,
  kL1,
  kSmoothL1,
  kHuber,
};

enum class OptimizerKind { kAdam, kAdamW, kSgd };
enum class MetricKind { kAccuracy, kMae, kMse };

// Targets are class ids (int64) rather than values shaped like the output.
bool LossTakesClassIds(LossKind loss);
bool LossIsClassification(LossKind loss);

const char* LossName(LossKind k);
const char* OptimizerName(OptimizerKind k);
const char* MetricName(MetricKind k);

struct FitOptions {
  LossKind loss = LossKind::kCrossEntropy;
  OptimizerKind optimizer = OptimizerKind::kAdam;
  double learning_rate = 1e-3;
  std::vector<MetricKind> metrics;
  bool shuffle = true;
  double momentum = 0;  // sgd only
  double weight_decay = 0;
};

// Parses the fit_kwargs JSON object ("" or "{}" gives the defaults above).
// Refuses, with kInvalidArgument and a message naming the key and listing
// what is allowed: unknown keys; batch_size, epochs, validation_data (which
// have their own flags); unknown loss, optimizer or metric names; values of
// the wrong type or range; momentum with an optimizer other than sgd; a
// metric that does not fit the loss (accuracy with a regression loss, mae or
// mse with class ids).
StatusOr<FitOptions> ParseFitKwargs(const std::string& json);

}  // namespace yard::trainer
