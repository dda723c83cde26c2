// A job's output by line, for the dashboard's log view: a 1,000,000-line log
// opens at its tail and scrolls back by ranged fetches, never sent whole.
//
// The cache reads a job's events once (later calls read only the new ones)
// and keeps its output as one text with the start of every line, plus its
// other events (states, decisions, metrics, artifacts: the timeline and the
// curves). It holds the few jobs looked at most recently.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "store/store.h"

namespace yard {

using Json = nlohmann::json;

struct OutputLines {
  int64_t total = 0;  // lines so far (a last line without its newline counts)
  int64_t from = 0;   // index of lines[0]
  std::vector<std::string> lines;
  int64_t seq = 0;       // the last event read: follow the stream after it
  bool partial = false;  // the last line has no newline yet
};

struct OutputMatches {
  std::vector<int64_t> lines;  // indexes of the lines containing the text
  bool more = false;           // there were more than asked for
};

class OutputCache {
 public:
  explicit OutputCache(Store* store, size_t max_jobs = 4) : store_(store), max_jobs_(max_jobs) {}

  // Lines [from, from + count) of the job's output; from < 0 counts from the
  // end (-count: the tail). Clamped to what exists.
  StatusOr<OutputLines> Lines(const std::string& job_id, int64_t from, int64_t count);
  // The job's events other than output (as stored), and the last seq read.
  StatusOr<std::pair<Json, int64_t>> Timeline(const std::string& job_id);
  // The first `max` lines containing `text` (case-sensitive).
  StatusOr<OutputMatches> Search(const std::string& job_id, const std::string& text, size_t max);
  // The whole output text.
  StatusOr<std::string> Text(const std::string& job_id);

 private:
  struct Entry {
    std::string job_id;
    Mutex mu;
    std::string text GUARDED_BY(mu);
    std::vector<uint64_t> line_starts GUARDED_BY(mu) = {0};  // offsets in text
    Json timeline GUARDED_BY(mu) = Json::array();
    int64_t seq GUARDED_BY(mu) = 0;
  };
  // The job's entry, made the most recent (a new one if none is cached).
  std::shared_ptr<Entry> Recent(const std::string& job_id) EXCLUDES(mu_);
  // Reads into `e` the events stored since it was last read.
  Status ReadNew(Entry& e) REQUIRES(e.mu);

  Store* const store_;
  const size_t max_jobs_;
  Mutex mu_;
  std::list<std::shared_ptr<Entry>> recent_ GUARDED_BY(mu_);  // most recent first
};

}  // namespace yard
