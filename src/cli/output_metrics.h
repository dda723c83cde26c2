// Epoch metrics read from a job's output, for scripts that print them the
// way Keras's and PyTorch Lightning's progress output does rather than
// writing $YARD_METRICS: the sweep table shows them.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace yard::cli {

// Feeds a job's output in pieces as it arrives; splits it into segments at
// '\n' and '\r' (progress bars redraw with '\r').
class OutputMetrics {
 public:
  // True when the output so far changed latest().
  bool Add(const std::string& data);
  // {"epoch": N, "loss": ..., ...} of the newest segment with metrics; {}
  // before any. Keras: "Epoch 3/10" then "... - loss: 0.41 - accuracy: 0.88";
  // Lightning: "Epoch 2: 100%|...| 32/32 [..., train_loss=0.41, val_acc=0.9]".
  const nlohmann::json& latest() const { return latest_; }

 private:
  bool Segment(const std::string& s);

  std::string pending_;
  int epoch_ = -1;  // from the last "Epoch N/M" line (Keras counts from 1)
  nlohmann::json latest_ = nlohmann::json::object();
};

}  // namespace yard::cli
