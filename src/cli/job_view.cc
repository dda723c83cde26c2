#include "cli/job_view.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>

namespace yard::cli {

std::string HumanBytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

std::string FormatTime(double epoch_s) {
  if (epoch_s <= 0) return "-";
  time_t t = static_cast<time_t>(epoch_s);
  struct tm tm;
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string FormatDuration(double seconds) {
  long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s < 60)
    std::snprintf(buf, sizeof(buf), "%lds", s);
  else if (s < 3600)
    std::snprintf(buf, sizeof(buf), "%ldm%02lds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof(buf), "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  return buf;
}

void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

namespace {

std::string MetricLine(const Json& values) {
  std::string out;
  for (const auto& [k, v] : values.items()) {
    out += (out.empty() ? "" : " ") + k + "=";
    if (v.is_number_float()) {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%.4g", v.get<double>());
      out += buf;
    } else {
      out += v.is_string() ? v.get<std::string>() : v.dump();
    }
  }
  return out;
}

// True when stdout and stderr reach the same file or terminal (a line of
// one can be glued to an unfinished line of the other).
bool StdoutIsStderr() {
  struct stat out, err;
  return fstat(STDOUT_FILENO, &out) == 0 && fstat(STDERR_FILENO, &err) == 0 &&
         out.st_dev == err.st_dev && out.st_ino == err.st_ino;
}

}  // namespace

LiveJobView::LiveJobView(std::string job_id, bool show_metrics)
    : job_id_(std::move(job_id)), show_metrics_(show_metrics), shared_stream_(StdoutIsStderr()) {}

void LiveJobView::EndOpenLine() {
  if (!output_open_) return;
  output_open_ = false;
  if (!shared_stream_) return;
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

void LiveJobView::Show(const Json& ev) {
  std::string kind = ev.value("kind", "");
  if (disconnected_ || kind == "decision" || kind == "state" || (kind == "metric" && show_metrics_))
    EndOpenLine();
  if (disconnected_) {
    std::fprintf(stderr, "yard: reconnected\n");
    disconnected_ = false;
  }
  if (kind == "output") {
    const std::string data = ev.value("data", "");
    std::fwrite(data.data(), 1, data.size(), stdout);
    std::fflush(stdout);
    if (!data.empty()) output_open_ = data.back() != '\n';
  } else if (kind == "artifact" && ev.value("dir", "") == "work") {
    const Json& entry = ev.value("entry", Json::object());
    work_files_[entry.value("path", "")] = entry.value("size", uint64_t{0});
  } else if (kind == "decision") {
    std::fprintf(stderr, "yard: %s\n", ev.value("message", "").c_str());
  } else if (kind == "metric" && show_metrics_) {
    std::fprintf(stderr, "yard: metric %s\n",
                 MetricLine(ev.value("values", Json::object())).c_str());
  } else if (kind == "state") {
    std::string state = ev.value("state", "");
    std::string msg = ev.value("message", "");
    if (msg.rfind(state + ": ", 0) == 0) msg.erase(0, state.size() + 2);  // say "waiting" once
    std::fprintf(stderr, "yard: %s %s%s%s\n", job_id_.c_str(), state.c_str(),
                 msg.empty() ? "" : ": ", msg.c_str());
    if (state == "succeeded" || state == "failed" || state == "cancelled") {
      finished_ = true;
      exit_code_ = state == "cancelled" ? 130 : ev.value("exit_code", state == "succeeded" ? 0 : 1);
    }
  }
}

void LiveJobView::OfferWorkFiles() const {
  std::string offer = WorkFilesOffer(job_id_, work_files_);
  std::fwrite(offer.data(), 1, offer.size(), stderr);
}

std::string WorkFilesOffer(const std::string& job_id,
                           const std::map<std::string, uint64_t>& files) {
  constexpr size_t kListed = 10;
  if (files.empty()) return "";
  size_t width = 0;
  for (const auto& [path, size] : files) width = std::max(width, std::min<size_t>(path.size(), 60));
  std::string out = "yard: the job wrote " + std::to_string(files.size()) +
                    (files.size() == 1 ? " file" : " files") + " in its working folder:\n";
  size_t listed = 0;
  for (const auto& [path, size] : files) {
    if (listed++ == kListed) {
      out += "yard:   ... and " + std::to_string(files.size() - kListed) + " more\n";
      break;
    }
    out += "yard:   " + path + std::string(width > path.size() ? width - path.size() : 0, ' ') +
           "  " + HumanBytes(size) + "\n";
  }
  return out + "yard: fetch " + (files.size() == 1 ? "it" : "them") + " with `yard fetch " +
         job_id + " --all` (into ./" + job_id + "/work/)\n";
}

void LiveJobView::Disconnected(const Status& why) {
  if (disconnected_) return;
  EndOpenLine();
  disconnected_ = true;
  std::fprintf(stderr, "yard: lost the connection to the server (%s); retrying...\n",
               why.message().c_str());
}

}  // namespace yard::cli
