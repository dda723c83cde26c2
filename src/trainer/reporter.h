// Reporter: where an epoch's numbers go — a Keras-like progress line on
// stdout, one JSON line appended to the metrics file, and TensorBoard
// scalars (tag = the value's name, step = epoch). No libtorch here.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "trainer/tb_events.h"

namespace yard::trainer {

struct EpochResult {
  int64_t epoch = 0;   // 1-based
  int64_t epochs = 0;  // total
  // In order: loss, training metrics, then val_loss and val_ metrics.
  std::vector<std::pair<std::string, double>> values;
  double seconds = 0;        // training part of the epoch (no validation)
  double samples_per_s = 0;  // training samples / seconds
};

// "Epoch 3/10 - loss: 0.4100 - accuracy: 0.8800 - val_loss: ... - 0.21s - 6850 samples/s"
std::string ProgressLine(const EpochResult& r);
// {"epoch": 3, "loss": ..., "accuracy": ..., "val_loss": ..., "samples_per_s": ...}
// Non-finite values are written as null.
std::string MetricsLine(const EpochResult& r);
// {"event": "replicas", "devices": 2, "shard_sizes": [3, 2]}
std::string ReplicasLine(int devices, const std::vector<int64_t>& shard_sizes);

class Reporter {
 public:
  ~Reporter();
  // Empty `metrics_path` or `log_dir` turn that output off. `out` receives
  // the human-readable lines (not owned). The metrics file is opened for
  // appending, so a resumed run continues the same history.
  static StatusOr<std::unique_ptr<Reporter>> Open(const std::string& metrics_path,
                                                  const std::string& log_dir, std::FILE* out,
                                                  const Clock* clock);

  // Prints `description` and records the replicas line.
  Status Replicas(int devices, const std::vector<int64_t>& shard_sizes,
                  const std::string& description);
  Status Epoch(const EpochResult& r);
  // A line for the user only (stdout).
  void Say(const std::string& line);

 private:
  Reporter(std::FILE* out, const Clock* clock) : out_(out), clock_(clock) {}
  Status AppendMetrics(const std::string& line);

  std::FILE* out_;
  const Clock* clock_;
  std::FILE* metrics_ = nullptr;
  std::string metrics_path_;
  std::unique_ptr<EventFileWriter> events_;
};

}  // namespace yard::trainer
