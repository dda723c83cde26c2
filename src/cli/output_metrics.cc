#include "cli/output_metrics.h"

#include <regex>

namespace yard::cli {
namespace {

const std::regex& KerasEpoch() {
  static const std::regex r(R"(^\s*Epoch (\d+)/\d+\s*$)");
  return r;
}
// "loss: 0.4123" in " - "-separated Keras lines.
const std::regex& KerasPair() {
  static const std::regex r(R"(- ([A-Za-z_]\w*): (-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?=\s|$))");
  return r;
}
const std::regex& LightningEpoch() {
  static const std::regex r(R"(^\s*Epoch (\d+):)");
  return r;
}
// "train_loss=0.412" in Lightning's bar postfix.
const std::regex& LightningPair() {
  static const std::regex r(R"(([A-Za-z_]\w*)=(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?=[,\]\s]|$))");
  return r;
}

nlohmann::json Pairs(const std::string& s, const std::regex& pair) {
  nlohmann::json out = nlohmann::json::object();
  for (auto it = std::sregex_iterator(s.begin(), s.end(), pair); it != std::sregex_iterator();
       ++it) {
    std::string key = (*it)[1];
    if (key == "v_num" || key == "ETA") continue;
    out[key] = std::stod((*it)[2]);
  }
  return out;
}

}  // namespace

bool OutputMetrics::Add(const std::string& data) {
  pending_ += data;
  bool changed = false;
  size_t start = 0;
  for (size_t i = 0; i < pending_.size(); ++i) {
    if (pending_[i] != '\n' && pending_[i] != '\r') continue;
    changed |= Segment(pending_.substr(start, i - start));
    start = i + 1;
  }
  pending_.erase(0, start);
  if (pending_.size() > 64 * 1024) pending_.clear();  // no line ends: not a progress line
  return changed;
}

bool OutputMetrics::Segment(const std::string& s) {
  std::smatch m;
  if (std::regex_search(s, m, KerasEpoch())) {
    epoch_ = std::stoi(m[1]);
    return false;
  }
  nlohmann::json values;
  if (std::regex_search(s, m, LightningEpoch())) {
    values = Pairs(s, LightningPair());
    if (!values.empty()) values["epoch"] = std::stoi(m[1]) + 1;  // Lightning counts from 0
  } else if (s.find("loss: ") != std::string::npos) {
    values = Pairs(s, KerasPair());
    if (!values.empty() && epoch_ >= 0) values["epoch"] = epoch_;
  }
  if (values.empty() || values == latest_) return false;
  latest_ = std::move(values);
  return true;
}

}  // namespace yard::cli
