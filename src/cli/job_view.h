// Rendering jobs and their events for people: live output of `yard fit`
// and `yard logs`, and the tables of `yard jobs`, `status`, `machines`.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace yard::cli {

using Json = nlohmann::json;

// "1.5 MiB"
std::string HumanBytes(uint64_t bytes);
// "2026-11-25 10:04:05" (local time) from epoch seconds.
std::string FormatTime(double epoch_s);
// "3m12s"
std::string FormatDuration(double seconds);
// Prints rows as aligned columns; the first row is the header.
void PrintTable(const std::vector<std::vector<std::string>>& rows);

// Shows a job's events as they arrive: the job's output verbatim on stdout,
// Trainyard's own lines (states, decisions, metrics) on stderr prefixed
// "yard:". Not thread-safe: one follower thread calls it.
class LiveJobView {
 public:
  explicit LiveJobView(std::string job_id, bool show_metrics = true);
  // A line of Trainyard's own never continues an output line that lacks its
  // newline yet: when stdout and stderr are one stream, that line is ended
  // first.
  void Show(const Json& event);
  // Tells the user once per outage that the connection is being retried.
  void Disconnected(const Status& why);
  // Lists on stderr the files the job wrote in its working folder (its
  // "work" artifacts, seen by Show), with their sizes and the command that
  // fetches them; nothing when there are none.
  void OfferWorkFiles() const;
  // The exit code for `yard fit`: the job's own, 1 if it failed without
  // one (e.g. lost), 130 if cancelled; 0 until a final state was seen.
  int ExitCode() const { return exit_code_; }
  bool finished() const { return finished_; }

 private:
  void EndOpenLine();

  std::string job_id_;
  bool show_metrics_;
  bool shared_stream_;        // stdout and stderr are one file or terminal
  bool output_open_ = false;  // the job's last output lacked its newline
  bool finished_ = false;
  bool disconnected_ = false;
  int exit_code_ = 0;
  std::map<std::string, uint64_t> work_files_;  // path -> size of the newest version
};

// "yard fetch JOB --all" lines for `files` (path -> size) of a job's working
// folder: how many, the first few with their sizes, and the command; "" when
// `files` is empty.
std::string WorkFilesOffer(const std::string& job_id, const std::map<std::string, uint64_t>& files);

}  // namespace yard::cli
