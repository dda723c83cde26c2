#include "trainer/fit_options.h"

#include <nlohmann/json.hpp>

namespace yard::trainer {
namespace {

using Json = nlohmann::json;

template <typename E>
struct Named {
  const char* name;
  E value;
};

constexpr Named<LossKind> kLosses[] = {
    {"cross_entropy", LossKind::kCrossEntropy},
    {"nll", LossKind::kNll},
    {"bce_with_logits", LossKind::kBceWithLogits},
    {"mse", LossKind::kMse},
    {"l1", LossKind::kL1},
    {"smooth_l1", LossKind::kSmoothL1},
    {"huber", LossKind::kHuber},
};
constexpr Named<OptimizerKind> kOptimizers[] = {
    {"adam", OptimizerKind::kAdam},
    {"adamw", OptimizerKind::kAdamW},
    {"sgd", OptimizerKind::kSgd},
};
constexpr Named<MetricKind> kMetrics[] = {
    {"accuracy", MetricKind::kAccuracy},
    {"mae", MetricKind::kMae},
    {"mse", MetricKind::kMse},
};
constexpr const char* kKeys[] = {"loss",    "optimizer", "learning_rate", "metrics",
                                 "shuffle", "momentum",  "weight_decay"};
constexpr const char* kOwnFlags[][2] = {
    {"batch_size", "--batch-size"}, {"epochs", "--epochs"}, {"validation_data", "--val-x/--val-y"}};

template <typename T, size_t N>
std::string JoinNames(const T (&table)[N]) {
  std::string out;
  for (const auto& e : table) out += std::string(out.empty() ? "" : ", ") + e.name;
  return out;
}

template <typename E, size_t N>
const char* NameOf(const Named<E> (&table)[N], E v) {
  for (const auto& e : table)
    if (e.value == v) return e.name;
  return "?";
}

template <typename E, size_t N>
StatusOr<E> Lookup(const Named<E> (&table)[N], const Json& v, const char* what) {
  if (!v.is_string())
    return InvalidArgument(std::string("fit_kwargs: ") + what + " must be a string");
  for (const auto& e : table)
    if (v.get<std::string>() == e.name) return e.value;
  return InvalidArgument(std::string("fit_kwargs: unknown ") + what + " \"" + v.get<std::string>() +
                         "\"; allowed: " + JoinNames(table));
}

Status CheckKey(const std::string& key) {
  for (const auto& own : kOwnFlags) {
    if (key == own[0]) {
      return InvalidArgument("fit_kwargs may not set \"" + key + "\": pass it as " + own[1]);
    }
  }
  for (const char* k : kKeys)
    if (key == k) return Status::Ok();
  std::string allowed;
  for (const char* k : kKeys) allowed += std::string(allowed.empty() ? "" : ", ") + k;
  return InvalidArgument("fit_kwargs: unknown key \"" + key + "\"; allowed: " + allowed);
}

StatusOr<double> NonNegative(const Json& v, const char* key, bool positive) {
  if (!v.is_number())
    return InvalidArgument(std::string("fit_kwargs: ") + key + " must be a number");
  double d = v.get<double>();
  if (positive ? !(d > 0) : !(d >= 0)) {
    return InvalidArgument(std::string("fit_kwargs: ") + key + " must be " +
                           (positive ? "> 0" : ">= 0"));
  }
  return d;
}

Status ParseMetrics(const Json& v, FitOptions* o) {
  if (!v.is_array()) return InvalidArgument("fit_kwargs: metrics must be a list of names");
  for (const Json& m : v) {
    YARD_ASSIGN_OR_RETURN(MetricKind k, Lookup(kMetrics, m, "metric"));
    bool seen = false;
    for (MetricKind have : o->metrics) seen |= have == k;
    if (!seen) o->metrics.push_back(k);
  }
  return Status::Ok();
}

Status ParseOne(const std::string& key, const Json& v, FitOptions* o) {
  if (key == "loss") {
    YARD_ASSIGN_OR_RETURN(o->loss, Lookup(kLosses, v, "loss"));
  } else if (key == "optimizer") {
    YARD_ASSIGN_OR_RETURN(o->optimizer, Lookup(kOptimizers, v, "optimizer"));
  } else if (key == "learning_rate") {
    YARD_ASSIGN_OR_RETURN(o->learning_rate, NonNegative(v, "learning_rate", true));
  } else if (key == "momentum") {
    YARD_ASSIGN_OR_RETURN(o->momentum, NonNegative(v, "momentum", false));
  } else if (key == "weight_decay") {
    YARD_ASSIGN_OR_RETURN(o->weight_decay, NonNegative(v, "weight_decay", false));
  } else if (key == "metrics") {
    return ParseMetrics(v, o);
  } else if (key == "shuffle") {
    if (!v.is_boolean()) return InvalidArgument("fit_kwargs: shuffle must be true or false");
    o->shuffle = v.get<bool>();
  }
  return Status::Ok();
}

Status CheckCombination(const FitOptions& o, const Json& j) {
  if (j.contains("momentum") && o.optimizer != OptimizerKind::kSgd) {
    return InvalidArgument(std::string("fit_kwargs: momentum applies to optimizer sgd only, not ") +
                           OptimizerName(o.optimizer));
  }
  for (MetricKind m : o.metrics) {
    if (m == MetricKind::kAccuracy && !LossIsClassification(o.loss)) {
      return InvalidArgument(std::string("fit_kwargs: metric accuracy needs a classification loss "
                                         "(cross_entropy, nll, bce_with_logits), not ") +
                             LossName(o.loss));
    }
    if (m != MetricKind::kAccuracy && LossTakesClassIds(o.loss)) {
      return InvalidArgument(std::string("fit_kwargs: metric ") + MetricName(m) +
                             " compares outputs with targets of the same shape; loss " +
                             LossName(o.loss) + " takes class ids");
    }
  }
  return Status::Ok();
}

}  // namespace

bool LossTakesClassIds(LossKind loss) {
  return loss == LossKind::kCrossEntropy || loss == LossKind::kNll;
}
bool LossIsClassification(LossKind loss) {
  return LossTakesClassIds(loss) || loss == LossKind::kBceWithLogits;
}
const char* LossName(LossKind k) { return NameOf(kLosses, k); }
const char* OptimizerName(OptimizerKind k) { return NameOf(kOptimizers, k); }
const char* MetricName(MetricKind k) { return NameOf(kMetrics, k); }

StatusOr<FitOptions> ParseFitKwargs(const std::string& text) {
  FitOptions o;
  if (text.find_first_not_of(" \t\n") == std::string::npos) return o;
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgument("fit_kwargs: not valid JSON: " + text);
  if (!j.is_object()) return InvalidArgument("fit_kwargs: must be a JSON object");
  for (const auto& [key, value] : j.items()) YARD_RETURN_IF_ERROR(CheckKey(key));
  for (const auto& [key, value] : j.items()) YARD_RETURN_IF_ERROR(ParseOne(key, value, &o));
  YARD_RETURN_IF_ERROR(CheckCombination(o, j));
  return o;
}

}  // namespace yard::trainer
