#include "cli/sweep_view.h"

#include <unistd.h>

#include <cstdio>
#include <mutex>
#include <thread>

#include "cli/job_view.h"
#include "client/follow.h"

namespace yard::cli {
namespace {

struct Row {
  std::string id, description, state = "requesting", metrics;
};

std::string MetricsText(const Json& values) {
  std::string out;
  for (const auto& [k, v] : values.items()) {
    char buf[64];
    if (v.is_number_float()) std::snprintf(buf, sizeof(buf), "%s=%.4g", k.c_str(), v.get<double>());
    else std::snprintf(buf, sizeof(buf), "%s=%s", k.c_str(), v.dump().c_str());
    out += (out.empty() ? "" : " ") + std::string(buf);
  }
  return out;
}

class SweepTable {
 public:
  explicit SweepTable(std::vector<Row> rows) : rows_(std::move(rows)), tty_(isatty(STDOUT_FILENO)) {}

  void Update(size_t i, const Json& ev) {
    std::lock_guard<std::mutex> lock(mu_);
    std::string kind = ev.value("kind", "");
    bool changed = false;
    if (kind == "state") { rows_[i].state = ev.value("state", ""); changed = true; }
    if (kind == "metric") { rows_[i].metrics = MetricsText(ev.value("values", Json::object())); changed = tty_; }
    if (changed) Draw();
  }

  bool AllSucceeded() const {
    for (const auto& r : rows_) if (r.state != "succeeded") return false;
    return true;
  }

 private:
  void Draw() {  // REQUIRES: mu_ held
    if (tty_ && drawn_) std::printf("\x1b[%zuA", rows_.size() + 1);
    std::vector<std::vector<std::string>> t = {{"JOB", "STATE", "SWEEP", "LATEST METRICS"}};
    for (const auto& r : rows_) t.push_back({r.id, r.state, r.description, r.metrics.empty() ? "-" : r.metrics});
    if (tty_) {
      for (auto& row : t) for (auto& c : row) c += "\x1b[K";
    } else {
      std::printf("\n");
    }
    PrintTable(t);
    std::fflush(stdout);
    drawn_ = true;
  }

  std::mutex mu_;
  std::vector<Row> rows_;
  bool tty_;
  bool drawn_ = false;
};

}  // namespace

int FollowSweep(const HttpClient& client,
                const std::vector<std::pair<std::string, std::string>>& jobs) {
  std::vector<Row> rows;
  for (const auto& [id, desc] : jobs) {
    Row row;
    row.id = id;
    row.description = desc;
    rows.push_back(std::move(row));
  }
  SweepTable table(rows);
  std::vector<std::thread> followers;
  for (size_t i = 0; i < jobs.size(); ++i)
    followers.emplace_back([&, i] {
      FollowOptions opts;
      opts.on_disconnect = [](const Status&) { return true; };
      (void)FollowEvents(client, jobs[i].first, opts, [&](const Json& ev) {
        table.Update(i, ev);
        return true;
      });
    });
  for (auto& t : followers) t.join();
  return table.AllSucceeded() ? 0 : 1;
}

}  // namespace yard::cli
