#include "client/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "common/thread_annotations.h"

namespace yard {
namespace {

std::string Printf(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

class Reporter : public ProgressReporter {
 public:
  explicit Reporter(ProgressOptions o) : o_(std::move(o)), start_(o_.clock->Now()) {}

  void Update(uint64_t done, uint64_t total) override {
    MutexLock lock(mu_);
    if (finished_) return;
    done_ = std::max(done_, done);  // workers' reports may cross
    total_ = total;
    double now = o_.clock->Now();
    if (now - start_ < o_.show_after_s) return;
    if (o_.terminal) {
      if (!shown_ || now - last_shown_ >= o_.redraw_every_s) Redraw(now);
    } else if (PlainLineDue(now)) {
      PrintPlain(now);
    }
  }

  void Finish() override {
    MutexLock lock(mu_);
    if (finished_) return;
    finished_ = true;
    if (!shown_) return;
    double now = o_.clock->Now();
    if (o_.terminal) {
      Redraw(now);
      o_.write("\n");
      return;
    }
    o_.write(o_.label + "  " + FormatBytes(done_) + " in " + FormatDuration(now - start_) + "  " +
             FormatBytes(static_cast<uint64_t>(Rate(now))) + "/s\n");
  }

 private:
  double Rate(double now) const REQUIRES(mu_) {
    double elapsed = now - start_;
    return elapsed > 0 ? static_cast<double>(done_) / elapsed : 0;
  }

  // The line is padded over what the previous one drew, so no escape codes
  // are needed to clear it.
  void Redraw(double now) REQUIRES(mu_) {
    int cols = o_.columns ? o_.columns() : 80;
    size_t width =
        cols > 1 ? static_cast<size_t>(cols - 1) : 79;  // the last column wraps on some terminals
    std::string line = FormatProgressLine(o_.label, done_, total_, Rate(now), width);
    size_t shown = line.size();
    if (drawn_ > line.size()) line.append(std::min(drawn_, width) - line.size(), ' ');
    o_.write("\r" + line);
    drawn_ = shown;
    shown_ = true;
    last_shown_ = now;
  }

  bool PlainLineDue(double now) const REQUIRES(mu_) {
    if (!shown_ || now - last_shown_ >= o_.plain_every_s) return true;
    return total_ > 0 && Fraction() >= last_fraction_ + o_.plain_every_fraction;
  }

  void PrintPlain(double now) REQUIRES(mu_) {
    o_.write(FormatProgressLine(o_.label, done_, total_, Rate(now), 0) + "\n");
    shown_ = true;
    last_shown_ = now;
    last_fraction_ = Fraction();
  }

  double Fraction() const REQUIRES(mu_) { return total_ ? static_cast<double>(done_) / total_ : 0; }

  const ProgressOptions o_;
  const double start_;
  Mutex mu_;
  uint64_t done_ GUARDED_BY(mu_) = 0;
  uint64_t total_ GUARDED_BY(mu_) = 0;
  bool shown_ GUARDED_BY(mu_) = false;
  bool finished_ GUARDED_BY(mu_) = false;
  double last_shown_ GUARDED_BY(mu_) = 0;
  double last_fraction_ GUARDED_BY(mu_) = 0;
  size_t drawn_ GUARDED_BY(mu_) = 0;  // visible length of the line drawn in place
};

class SilentProgress : public ProgressReporter {
 public:
  void Update(uint64_t, uint64_t) override {}
  void Finish() override {}
};

int StderrColumns() {
  struct winsize ws;
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

}  // namespace

std::unique_ptr<ProgressReporter> MakeProgress(ProgressOptions options) {
  return std::make_unique<Reporter>(std::move(options));
}

std::unique_ptr<ProgressReporter> MakeProgressFromEnv(ProgressOptions options) {
  const char* env = std::getenv("YARD_PROGRESS");
  std::string mode = env ? env : "";
  if (mode == "never" || mode == "0" || mode == "off") return std::make_unique<SilentProgress>();
  if (mode == "always") options.show_after_s = 0;
  return MakeProgress(std::move(options));
}

std::unique_ptr<ProgressReporter> StderrProgress(const std::string& label) {
  static const RealClock clock;
  ProgressOptions o;
  o.label = label;
  o.clock = &clock;
  o.terminal = ::isatty(STDERR_FILENO) == 1;
  o.columns = StderrColumns;
  o.write = [](std::string_view text) {
    std::fwrite(text.data(), 1, text.size(), stderr);
    std::fflush(stderr);
  };
  return MakeProgressFromEnv(std::move(o));
}

std::string FormatBytes(uint64_t bytes) {
  double b = static_cast<double>(bytes);
  if (bytes < 1000) return std::to_string(bytes) + " B";
  if (b < 1e6) return Printf("%.1f kB", b / 1e3);
  if (b < 1e9) return Printf("%.1f MB", b / 1e6);
  return Printf("%.2f GB", b / 1e9);
}

std::string FormatDuration(double seconds) {
  if (!(seconds >= 0) || seconds > 100 * 86400.0) return "?";
  auto s = static_cast<long long>(std::ceil(seconds));
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lld:%02lld", s / 60, s % 60);
  }
  return buf;
}

std::string FormatProgressLine(const std::string& label, uint64_t done, uint64_t total,
                               double bytes_per_s, size_t width) {
  std::vector<std::string> parts;
  if (total > 0) {
    parts.push_back(FormatBytes(done) + " / " + FormatBytes(total));
    parts.push_back(std::to_string(std::min<uint64_t>(100, done * 100 / total)) + "%");
  } else {
    parts.push_back(FormatBytes(done));
  }
  parts.push_back(FormatBytes(static_cast<uint64_t>(bytes_per_s)) + "/s");
  if (total > 0 && bytes_per_s > 0) {
    double left = done >= total ? 0 : static_cast<double>(total - done) / bytes_per_s;
    parts.push_back(FormatDuration(left) + " left");
  }
  std::string numbers;
  for (const std::string& p : parts) numbers += "  " + p;
  // The numbers matter more than the label: it is cut first.
  std::string head = label;
  if (width > 0 && head.size() + numbers.size() > width) {
    size_t room = width > numbers.size() ? width - numbers.size() : 0;
    head = room >= 4 ? head.substr(0, room - 3) + "..." : "";
  }
  std::string line = head.empty() ? numbers.substr(2) : head + numbers;
  if (width > 0 && line.size() > width) line.resize(width);
  return line;
}

}  // namespace yard
