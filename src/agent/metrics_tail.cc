#include "agent/metrics_tail.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>

namespace yard {

namespace {

Json IgnoredLine(int64_t line_no, const std::string& why) {
  return {{"kind", "output"},
          {"data", "yard: ignored metric line " + std::to_string(line_no) + ": " + why + "\n"}};
}

// nlohmann's messages start with "[json.exception.parse_error.101] ".
std::string ParseErrorText(const std::string& what) {
  size_t close = what.find("] ");
  return close == std::string::npos ? what : what.substr(close + 2);
}

bool IsBlank(std::string_view s) {
  return s.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

}  // namespace

Json MetricLineRecord(std::string_view line, int64_t line_no) {
  if (IsBlank(line)) return Json();
  Json values;
  try {
    values = Json::parse(line);
  } catch (const Json::exception& e) {
    return IgnoredLine(line_no, "not JSON (" + ParseErrorText(e.what()) + ")");
  }
  if (!values.is_object()) return IgnoredLine(line_no, "not a JSON object");
  return {{"kind", "metric"}, {"values", std::move(values)}};
}

std::vector<Json> MetricsTail::Poll(bool final) {
  std::vector<Json> out;
  int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  struct stat st;
  if (::fstat(fd, &st) == 0 && static_cast<uint64_t>(st.st_size) < offset_) {
    offset_ = 0;  // truncated or replaced: start over
    partial_.clear();
  }
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, static_cast<off_t>(offset_));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    offset_ += static_cast<uint64_t>(n);
    partial_.append(buf, static_cast<size_t>(n));
    TakeLines(&out);
  }
  ::close(fd);
  if (final && !partial_.empty()) TakeLine(std::exchange(partial_, {}), &out);
  return out;
}

void MetricsTail::TakeLines(std::vector<Json>* out) {
  size_t start = 0;
  for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
    TakeLine(std::string_view(partial_).substr(start, nl - start), out);
  }
  partial_.erase(0, start);
  if (partial_.size() > kMaxLine) {
    if (!skipping_) {
      out->push_back(
          IgnoredLine(line_no_ + 1, "longer than " + std::to_string(kMaxLine) + " bytes"));
    }
    skipping_ = true;
    partial_.clear();
  }
}

void MetricsTail::TakeLine(std::string_view line, std::vector<Json>* out) {
  ++line_no_;
  if (skipping_) {  // the end of an over-long line, already reported
    skipping_ = false;
    return;
  }
  Json record = MetricLineRecord(line, line_no_);
  if (!record.is_null()) out->push_back(std::move(record));
}

}  // namespace yard
