#include "cli/sweep_view.h"

#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <mutex>
#include <thread>

#include "cli/job_view.h"
#include "cli/output_metrics.h"
#include "client/follow.h"
#include "client/transfer.h"
#include "common/thread_annotations.h"

namespace yard::cli {
namespace {

struct Row {
  std::string id, description, state = "requesting", metrics;
  bool metric_events = false;                  // the job writes $YARD_METRICS: those win
  OutputMetrics printed;                       // else what Keras / Lightning print
  std::map<std::string, uint64_t> work_files;  // written in its working folder: path -> size
};

std::string MetricsText(const Json& values) {
  std::string out;
  for (const auto& [k, v] : values.items()) {
    char buf[64];
    if (v.is_number_float())
      std::snprintf(buf, sizeof(buf), "%s=%.4g", k.c_str(), v.get<double>());
    else
      std::snprintf(buf, sizeof(buf), "%s=%s", k.c_str(), v.dump().c_str());
    out += (out.empty() ? "" : " ") + std::string(buf);
  }
  return out;
}

class SweepTable {
 public:
  explicit SweepTable(std::vector<Row> rows)
      : rows_(std::move(rows)), tty_(isatty(STDOUT_FILENO)) {}

  void Update(size_t i, const Json& ev) {
    MutexLock lock(mu_);
    std::string kind = ev.value("kind", "");
    bool changed = false;
    if (kind == "state") {
      rows_[i].state = ev.value("state", "");
      changed = true;
    }
    if (kind == "artifact" && ev.value("dir", "") == "work") {
      const Json& entry = ev.value("entry", Json::object());
      rows_[i].work_files[entry.value("path", "")] = entry.value("size", uint64_t{0});
    }
    if (kind == "metric") {
      rows_[i].metric_events = true;
      rows_[i].metrics = MetricsText(ev.value("values", Json::object()));
      changed = tty_;
    }
    if (kind == "output" && !rows_[i].metric_events && rows_[i].printed.Add(ev.value("data", ""))) {
      rows_[i].metrics = MetricsText(rows_[i].printed.latest());
      changed = tty_;
    }
    if (changed) Draw();
  }

  // One line per job that wrote files in its working folder.
  void OfferWorkFiles() const {
    MutexLock lock(mu_);
    for (const auto& r : rows_) {
      if (r.work_files.empty()) continue;
      uint64_t bytes = 0;
      for (const auto& [path, size] : r.work_files) bytes += size;
      std::fprintf(stderr,
                   "yard: %s wrote %zu %s (%s) in its working folder: `yard fetch %s --all`\n",
                   r.id.c_str(), r.work_files.size(), r.work_files.size() == 1 ? "file" : "files",
                   HumanBytes(bytes).c_str(), r.id.c_str());
    }
  }

  bool AllSucceeded() const {
    MutexLock lock(mu_);
    for (const auto& r : rows_)
      if (r.state != "succeeded") return false;
    return true;
  }

 private:
  void Draw() REQUIRES(mu_) {
    if (tty_ && drawn_) std::printf("\x1b[%zuA", rows_.size() + 1);
    std::vector<std::vector<std::string>> t = {{"JOB", "STATE", "SWEEP", "LATEST METRICS"}};
    for (const auto& r : rows_)
      t.push_back({r.id, r.state, r.description, r.metrics.empty() ? "-" : r.metrics});
    if (tty_) {
      for (auto& row : t)
        for (auto& c : row) c += "\x1b[K";
    } else {
      std::printf("\n");
    }
    PrintTable(t);
    std::fflush(stdout);
    drawn_ = true;
  }

  mutable Mutex mu_;  // the followers' threads update rows_
  std::vector<Row> rows_ GUARDED_BY(mu_);
  const bool tty_;
  bool drawn_ GUARDED_BY(mu_) = false;
};

// A folder name for one job of the sweep: its description ("lr=0.1 bs=32"
// -> "lr=0.1_bs=32"), else its id.
std::string SubFolder(const std::string& id, const std::string& description) {
  std::string out;
  for (char c : description)
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '=' || c == '-' ||
            c == ',')
               ? c
               : '_';
  return out.empty() || out == "." || out == ".." ? id : out;
}

}  // namespace

int FollowSweep(const HttpClient& client,
                const std::vector<std::pair<std::string, std::string>>& jobs,
                const std::map<std::string, std::string>& dirs) {
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
      std::map<std::string, std::string> mine;  // each job into its own sub-folder
      for (const auto& [dir, local] : dirs)
        if (!local.empty()) mine[dir] = local + "/" + SubFolder(jobs[i].first, jobs[i].second);
      ArtifactMirror mirror(client, mine);
      FollowOptions opts;
      opts.on_disconnect = [](const Status&) { return true; };
      (void)FollowEvents(client, jobs[i].first, opts, [&](const Json& ev) {
        if (ArtifactMirror::Takes(ev)) mirror.Add(ev);
        table.Update(i, ev);
        return true;
      });
      if (Status s = mirror.Drain(); !s.ok())
        std::fprintf(stderr, "yard: mirroring %s: %s\n", jobs[i].first.c_str(),
                     s.message().c_str());
    });
  for (auto& t : followers) t.join();
  table.OfferWorkFiles();
  return table.AllSucceeded() ? 0 : 1;
}

}  // namespace yard::cli
