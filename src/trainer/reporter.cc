#include "trainer/reporter.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/files.h"

namespace yard::trainer {
namespace {

using OrderedJson = nlohmann::ordered_json;

OrderedJson Number(double v) { return std::isfinite(v) ? OrderedJson(v) : OrderedJson(nullptr); }

std::string Format(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

}  // namespace

std::string ProgressLine(const EpochResult& r) {
  std::string line = "Epoch " + std::to_string(r.epoch) + "/" + std::to_string(r.epochs);
  for (const auto& [name, v] : r.values) line += " - " + name + ": " + Format("%.4f", v);
  line +=
      " - " + Format("%.2fs", r.seconds) + " - " + Format("%.0f", r.samples_per_s) + " samples/s";
  return line;
}

std::string MetricsLine(const EpochResult& r) {
  OrderedJson j;
  j["epoch"] = r.epoch;
  for (const auto& [name, v] : r.values) j[name] = Number(v);
  j["samples_per_s"] = Number(r.samples_per_s);
  return j.dump();
}

std::string ReplicasLine(int devices, const std::vector<int64_t>& shard_sizes) {
  OrderedJson j;
  j["event"] = "replicas";
  j["devices"] = devices;
  j["shard_sizes"] = shard_sizes;
  return j.dump();
}

Reporter::~Reporter() {
  if (metrics_) std::fclose(metrics_);
}

StatusOr<std::unique_ptr<Reporter>> Reporter::Open(const std::string& metrics_path,
                                                   const std::string& log_dir, std::FILE* out,
                                                   const Clock* clock) {
  std::unique_ptr<Reporter> r(new Reporter(out, clock));
  if (!metrics_path.empty()) {
    std::string parent = std::filesystem::path(metrics_path).parent_path().string();
    if (!parent.empty()) YARD_RETURN_IF_ERROR(MakeDirs(parent));
    r->metrics_ = std::fopen(metrics_path.c_str(), "a");
    if (!r->metrics_) return ErrnoStatus("opening " + metrics_path);
    r->metrics_path_ = metrics_path;
  }
  if (!log_dir.empty()) {
    YARD_ASSIGN_OR_RETURN(r->events_, EventFileWriter::Open(log_dir, clock->Now()));
  }
  return r;
}

Status Reporter::Replicas(int devices, const std::vector<int64_t>& shard_sizes,
                          const std::string& description) {
  Say(description);
  return AppendMetrics(ReplicasLine(devices, shard_sizes));
}

Status Reporter::Epoch(const EpochResult& r) {
  Say(ProgressLine(r));
  YARD_RETURN_IF_ERROR(AppendMetrics(MetricsLine(r)));
  if (!events_) return Status::Ok();
  std::vector<std::pair<std::string, float>> scalars;
  for (const auto& [name, v] : r.values) scalars.emplace_back(name, static_cast<float>(v));
  return events_->WriteScalars(clock_->Now(), r.epoch, scalars);
}

void Reporter::Say(const std::string& line) {
  std::fprintf(out_, "%s\n", line.c_str());
  std::fflush(out_);
}

Status Reporter::AppendMetrics(const std::string& line) {
  if (!metrics_) return Status::Ok();
  if (std::fprintf(metrics_, "%s\n", line.c_str()) < 0 || std::fflush(metrics_) != 0) {
    return ErrnoStatus("appending to " + metrics_path_);
  }
  return Status::Ok();
}

}  // namespace yard::trainer
