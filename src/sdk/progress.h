// Turning a fit job's events into what the user sees (Progress, printed
// like the Python SDK's live view) and what the call returns (the history
// and the last output lines). Torch-free.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "sdk/fit_types.h"

namespace trainyard::internal {

// "loss: 0.4100 - accuracy: 0.8800 - val_loss: ..." in Keras' order: loss,
// the training metrics, then val_loss and the validation metrics.
std::string FormatValues(const std::map<std::string, double>& values);

// FormatValues of a metric event's values: its numbers (null as NaN),
// without the bookkeeping keys (the history's columns, below).
std::string FormatEpochValues(const nlohmann::json& values);

// "Epoch 3/10 - ...": a trainer's own epoch line, which the live views show
// from the metric events instead.
bool IsEpochLine(const std::string& line);

// The values object of a per-epoch metric event ({"kind": "metric",
// "values": {"epoch": N, ...}} without an "event" key), else nullptr.
const nlohmann::json* EpochValues(const nlohmann::json& event);

// Keras-shaped history from every metric event of a job (all attempts: a
// resumed run repeats no epoch; a re-run epoch keeps its newest values).
// The one rule for both SDKs (the Python SDK binds this; docs/python.md,
// "History"): every key with a number or null value, except the bookkeeping
// ones (epoch, epochs, event, seconds, samples_per_s, step, steps), is a
// column with one float per epoch; a value reported as null (non-finite) or
// missing from an epoch is NaN, so every column is as long as the epochs
// and holds floats only. Other values (strings, booleans) are not columns.
History HistoryFromEvents(const std::vector<nlohmann::json>& events);

// The history and its epochs (1-based, ascending), one per history row.
std::pair<History, std::vector<int64_t>> HistoryWithEpochs(
    const std::vector<nlohmann::json>& events);

// Feeds events in order, one call per event; calls `sink` with what is
// worth showing. Not thread-safe.
class ProgressTracker {
 public:
  static constexpr size_t kOutputLines = 20;

  ProgressTracker(std::string job_id, int64_t epochs, ProgressCallback sink);

  void OnEvent(const nlohmann::json& event);
  // Emits a kInfo line.
  void Info(const std::string& text);
  // Flushes a last output line without its newline.
  void Close();

  // Every event seen, in order.
  const std::vector<nlohmann::json>& events() const { return events_; }
  // The job's last kOutputLines output lines (epoch lines included).
  std::vector<std::string> last_output() const { return {tail_.begin(), tail_.end()}; }

 private:
  void Emit(Progress::Kind kind, std::string text);
  void OnOutput(const std::string& data);
  void OnMetric(const nlohmann::json& values, const std::string& instance);
  void OnEpoch(const nlohmann::json& values);
  void KeepLine(const std::string& line);

  std::string job_id_;
  int64_t epochs_;
  ProgressCallback sink_;
  std::string pending_;  // output after its last newline
  std::deque<std::string> tail_;
  std::vector<nlohmann::json> events_;
};

}  // namespace trainyard::internal
