// MetricsTail: follows the file a job writes its metrics to ($YARD_METRICS),
// one JSON object per line, and turns each complete line into a record.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "client/http_client.h"

namespace yard {

// Not thread-safe.
class MetricsTail {
 public:
  // Lines longer than this are refused rather than buffered without end.
  static constexpr size_t kMaxLine = 1 << 20;

  explicit MetricsTail(std::string path) : path_(std::move(path)) {}

  // Reads what was appended since the last call and returns one record per
  // complete line: {"kind":"metric","values":{...}} for a JSON object,
  // {"kind":"output","data":"yard: ignored metric line N: <why>\n"} for
  // anything else; blank lines are skipped. With `final` (the job has
  // ended), an unterminated last line counts as complete. A missing file is
  // no error (the job may not write metrics); a file that shrank is read
  // again from its start.
  std::vector<Json> Poll(bool final);

 private:
  void TakeLines(std::vector<Json>* out);
  void TakeLine(std::string_view line, std::vector<Json>* out);

  std::string path_;
  uint64_t offset_ = 0;    // bytes of the file consumed into partial_ or records
  std::string partial_;    // start of a line whose end has not been read yet
  bool skipping_ = false;  // inside an over-long line, dropping until its end
  int64_t line_no_ = 0;    // lines seen so far
};

// The record a complete metrics line becomes (see MetricsTail::Poll).
// `line_no` is 1-based. A blank line gives null (no record).
Json MetricLineRecord(std::string_view line, int64_t line_no);

}  // namespace yard
