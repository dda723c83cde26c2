// A spot interruption notice reaching yard-train: SIGUSR1 from the agent, or
// the file named by --preemption-notice ($YARD_PREEMPTION_NOTICE) appearing
// (docs/workflow.md, "Spot interruptions"). The trainer asks after every
// optimizer step; on a notice it writes a mid-epoch checkpoint and exits
// kExitPreempted, and the requeued job continues from that step.
#pragma once

#include <chrono>
#include <string>

namespace yard::trainer {

class NoticeWatch {
 public:
  // Installs the SIGUSR1 handler (it only sets a flag). `path` "" : the
  // signal alone counts. One per process.
  explicit NoticeWatch(std::string path);
  // Whether a notice came. Cheap: the file is looked for at most every 200 ms.
  bool Noticed();

 private:
  std::string path_;
  bool seen_ = false;
  std::chrono::steady_clock::time_point next_look_{};
};

}  // namespace yard::trainer
