#include "sdk/progress.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <limits>
#include <set>
#include <utility>

namespace trainyard {

void PrintProgress(const Progress& p) {
  bool to_stdout = p.kind == Progress::Kind::kOutput || p.kind == Progress::Kind::kEpoch;
  if (to_stdout) {
    std::fprintf(stdout, "%s\n", p.text.c_str());
    std::fflush(stdout);
  } else {
    std::fprintf(stderr, "trainyard: %s\n", p.text.c_str());
  }
}

}  // namespace trainyard

namespace trainyard::internal {
namespace {

using Json = nlohmann::json;

const std::set<std::string> kBookkeeping = {"epoch",         "epochs", "event", "seconds",
                                            "samples_per_s", "step",   "steps"};

// Keras' column order: loss, training metrics, val_loss, validation metrics.
std::pair<int, std::string> ColumnRank(const std::string& key) {
  bool val = key.rfind("val_", 0) == 0;
  std::string base = val ? key.substr(4) : key;
  return {(val ? 2 : 0) + (base == "loss" ? 0 : 1), base};
}

std::map<std::string, double> NumericValues(const Json& values) {
  std::map<std::string, double> out;
  for (const auto& [k, v] : values.items()) {
    if (kBookkeeping.count(k)) continue;
    if (v.is_number()) out[k] = v.get<double>();
    if (v.is_null()) out[k] = std::numeric_limits<double>::quiet_NaN();
  }
  return out;
}

std::string Fixed4(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.4f", v);
  return buf;
}

}  // namespace

std::string FormatValues(const std::map<std::string, double>& values) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : values) keys.push_back(k);
  std::stable_sort(keys.begin(), keys.end(), [](const std::string& a, const std::string& b) {
    return ColumnRank(a) < ColumnRank(b);
  });
  std::string out;
  for (const std::string& k : keys)
    out += (out.empty() ? "" : " - ") + k + ": " + Fixed4(values.at(k));
  return out;
}

bool IsEpochLine(const std::string& line) {
  size_t i = 6;
  if (line.rfind("Epoch ", 0) != 0) return false;
  auto digits = [&] {
    size_t start = i;
    while (i < line.size() && std::isdigit(static_cast<unsigned char>(line[i]))) ++i;
    return i > start;
  };
  if (!digits() || i >= line.size() || line[i++] != '/' || !digits()) return false;
  return line.compare(i, 3, " - ") == 0;
}

std::string FormatEpochValues(const Json& values) { return FormatValues(NumericValues(values)); }

const Json* EpochValues(const Json& ev) {
  if (!ev.is_object() || ev.value("kind", "") != "metric" || !ev.contains("values")) return nullptr;
  const Json& v = ev["values"];
  if (!v.is_object() || !v.contains("epoch") || !v["epoch"].is_number() || v.contains("event"))
    return nullptr;
  return &v;
}

std::pair<History, std::vector<int64_t>> HistoryWithEpochs(const std::vector<Json>& events) {
  std::map<int64_t, std::map<std::string, double>> per_epoch;
  for (const Json& ev : events)
    if (const Json* v = EpochValues(ev))
      per_epoch[(*v)["epoch"].get<int64_t>()] = NumericValues(*v);
  std::pair<History, std::vector<int64_t>> out;
  History& history = out.first;
  for (const auto& [epoch, values] : per_epoch)
    for (const auto& [k, _] : values) history[k];
  for (const auto& [epoch, values] : per_epoch) {
    out.second.push_back(epoch);
    for (auto& [k, column] : history) {
      auto it = values.find(k);
      column.push_back(it == values.end() ? std::numeric_limits<double>::quiet_NaN() : it->second);
    }
  }
  return out;
}

History HistoryFromEvents(const std::vector<Json>& events) {
  return HistoryWithEpochs(events).first;
}

ProgressTracker::ProgressTracker(std::string job_id, int64_t epochs, ProgressCallback sink)
    : job_id_(std::move(job_id)), epochs_(epochs), sink_(std::move(sink)) {}

void ProgressTracker::Emit(Progress::Kind kind, std::string text) {
  Progress p;
  p.kind = kind;
  p.job_id = job_id_;
  p.text = std::move(text);
  if (sink_) sink_(p);
}

void ProgressTracker::Info(const std::string& text) { Emit(Progress::Kind::kInfo, text); }

void ProgressTracker::OnEvent(const Json& ev) {
  events_.push_back(ev);
  std::string kind = ev.value("kind", "");
  if (kind == "state") {
    std::string instance = ev.value("instance", "");
    std::string message = ev.value("message", "");
    Emit(Progress::Kind::kState, job_id_ + " " + ev.value("state", "") +
                                     (instance.empty() ? "" : " on " + instance) +
                                     (message.empty() ? "" : ": " + message));
  } else if (kind == "decision") {
    Emit(Progress::Kind::kDecision, ev.value("message", ""));
  } else if (kind == "output") {
    OnOutput(ev.value("data", ""));
  } else if (kind == "metric" && ev.contains("values") && ev["values"].is_object()) {
    OnMetric(ev["values"], ev.value("instance", ""));
  }
}

void ProgressTracker::OnOutput(const std::string& data) {
  std::string text = pending_ + data;
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::string line = text.substr(start, nl - start);
    KeepLine(line);
    if (!IsEpochLine(line)) Emit(Progress::Kind::kOutput, line);
  }
  pending_ = text.substr(start);
}

void ProgressTracker::OnMetric(const Json& v, const std::string& instance) {
  std::string event =
      v.contains("event") && v["event"].is_string() ? v["event"].get<std::string>() : "";
  if (event == "replicas") {
    std::string devices = v.contains("devices") ? v["devices"].dump() : "?";
    Emit(Progress::Kind::kInfo,
         "training on " + devices + " replica(s)" + (instance.empty() ? "" : " on " + instance));
  } else if (event == "warning") {
    std::string message = v.contains("message") && v["message"].is_string()
                              ? v["message"].get<std::string>()
                              : v.value("message", Json()).dump();
    Emit(Progress::Kind::kWarning, "warning: " + message);
  } else if (event.empty() && v.contains("epoch") && v["epoch"].is_number()) {
    OnEpoch(v);
  }
}

void ProgressTracker::OnEpoch(const Json& v) {
  Progress p;
  p.kind = Progress::Kind::kEpoch;
  p.job_id = job_id_;
  p.epoch = v["epoch"].get<int64_t>();
  p.epochs = v.contains("epochs") && v["epochs"].is_number() ? v["epochs"].get<int64_t>() : epochs_;
  p.values = NumericValues(v);
  std::string head =
      "Epoch " + std::to_string(p.epoch) + (p.epochs > 0 ? "/" + std::to_string(p.epochs) : "");
  std::string values = FormatValues(p.values);
  p.text = values.empty() ? head : head + " - " + values;
  if (sink_) sink_(p);
}

void ProgressTracker::KeepLine(const std::string& line) {
  tail_.push_back(line);
  if (tail_.size() > kOutputLines) tail_.pop_front();
}

void ProgressTracker::Close() {
  if (pending_.empty()) return;
  KeepLine(pending_);
  if (!IsEpochLine(pending_)) Emit(Progress::Kind::kOutput, pending_);
  pending_.clear();
}

}  // namespace trainyard::internal
