// Spot interruptions: the agent of a cloud instance watches the instance
// metadata service (IMDSv2) for EC2's two-minute notice and tells its job.
//
//   PreemptionWatcher  polls `meta-data/spot/instance-action` (the
//                      interruption notice: {"action", "time"}) and
//                      `meta-data/events/recommendations/rebalance` (the
//                      rebalance recommendation: {"noticeTime"}) every
//                      poll_interval, through a MetadataSource (IMDSv2 for
//                      real, a fake in tests), into a PreemptionState.
//   PreemptionState    what was noticed, shared by the watcher (writes), the
//                      job runner (tells the job, stops it by the deadline)
//                      and the agent (reports the instance preempted once
//                      the job is over and its records are delivered).
//
// What a job sees (docs/workflow.md, "Spot interruptions"): the file named by
// YARD_PREEMPTION_NOTICE appears holding the notice's JSON, then the
// configured signal (SIGUSR1) reaches its process group. It has until the
// notice's time minus `margin` to write a checkpoint and exit; then it is
// terminated. A rebalance recommendation alone is only shown to the user.
//
// Enabled by the agent's environment (read by PreemptionOptionsFromEnv):
//   YARD_PREEMPTION_WATCH=imds       watch IMDSv2 (the AWS provider's
//                                    user-data sets it); unset/"" = off
//   AWS_EC2_METADATA_SERVICE_ENDPOINT  the IMDS address, as in AWS's SDKs
//                                    (default http://169.254.169.254)
//   YARD_PREEMPTION_POLL_S=2         seconds between polls (0.05 .. 60)
//   YARD_PREEMPTION_SIGNAL=USR1      USR1, USR2, INT, TERM, HUP, ... or a number
//   YARD_PREEMPTION_MARGIN_S=10      the job is stopped this long before
//                                    the notice's time (flush time)
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/stop_signal.h"
#include "common/status.h"
#include "common/thread_annotations.h"

namespace yard {

// One notice from the metadata service.
struct PreemptionNotice {
  enum class Kind { kInterruption, kRebalance };
  Kind kind = Kind::kInterruption;
  std::string action;  // "terminate", "stop", "hibernate" ("" for rebalance)
  std::string time;    // as EC2 wrote it (RFC 3339, UTC)
  double at = 0;       // `time` in Unix seconds; 0 when it could not be read
  std::string json;    // the body as received
  // "spot interruption notice: EC2 will terminate this instance at T"
  std::string Describe() const;
};

// Parse the body of spot/instance-action ({"action": "terminate", "time":
// "2026-12-06T03:05:00Z"}) / of the rebalance recommendation
// ({"noticeTime": "..."}). InvalidArgument for a body that is not that.
StatusOr<PreemptionNotice> ParseInstanceAction(const std::string& body);
StatusOr<PreemptionNotice> ParseRebalance(const std::string& body);
// "2026-12-06T03:05:00Z" (fractions and offsets accepted) as Unix seconds.
std::optional<double> ParseRfc3339(const std::string& text);

// "SIGUSR1" (or "signal 42" for one without a name here).
std::string SignalName(int sig);

// Where notices are read. Get(path) answers GET /latest/<path>: the body;
// NotFound when there is no notice (IMDS answers 404); any other error when
// the service could not be asked (the watcher tries again next poll).
class MetadataSource {
 public:
  virtual ~MetadataSource() = default;
  virtual StatusOr<std::string> Get(const std::string& path) = 0;
};

// IMDSv2 at `endpoint` ("http://host:port"; "" = AWS's address).
std::unique_ptr<MetadataSource> MakeImdsSource(const std::string& endpoint);

struct PreemptionOptions {
  bool enabled = false;
  std::string imds_endpoint;  // "" = AWS's own address
  std::chrono::milliseconds poll_interval{2000};
  int signal = 10;  // SIGUSR1 on Linux
  std::chrono::milliseconds margin{10000};
  // Tests: where notices come from (null = MakeImdsSource(imds_endpoint)).
  std::function<std::unique_ptr<MetadataSource>()> source;
};

// Reads the variables listed at the top of this file from `env` (the
// agent's environment). InvalidArgument, naming the variable and what it
// accepts, for a bad value.
StatusOr<PreemptionOptions> PreemptionOptionsFromEnv(
    const std::function<std::string(const std::string&)>& env);

// Thread-safe.
class PreemptionState {
 public:
  // The first interruption notice is kept; later ones change nothing.
  // Returns whether this one was the first.
  bool SetInterruption(PreemptionNotice n);
  std::optional<PreemptionNotice> interruption() const;
  // Rebalance recommendations, in the order seen (each noticeTime once).
  bool AddRebalance(PreemptionNotice n);
  std::vector<PreemptionNotice> rebalances() const;

  // Job attempts between their start and their end on this agent; the
  // agent reports the instance preempted only when none is left.
  void AttemptBegan();
  void AttemptEnded();
  // Waits up to `timeout` for an interruption notice; returns it, or
  // nullopt on timeout or when `stop` is notified (looked at every 100 ms).
  std::optional<PreemptionNotice> WaitInterruption(const StopSignal& stop,
                                                   std::chrono::milliseconds timeout) const;
  // Waits until no attempt runs, until `deadline` or `stop`; returns
  // whether none runs.
  bool WaitNoAttempt(const StopSignal& stop, std::chrono::steady_clock::time_point deadline) const;

 private:
  mutable Mutex mu_;
  mutable std::condition_variable cv_;
  std::optional<PreemptionNotice> interruption_ GUARDED_BY(mu_);
  std::vector<PreemptionNotice> rebalances_ GUARDED_BY(mu_);
  int attempts_ GUARDED_BY(mu_) = 0;
};

// Polls a MetadataSource into a PreemptionState on a thread of its own.
class PreemptionWatcher {
 public:
  // `log`: one line per change worth telling an operator (the service
  // unreachable / back, a notice). `state` outlives the watcher.
  PreemptionWatcher(std::unique_ptr<MetadataSource> source, PreemptionState* state,
                    std::chrono::milliseconds interval,
                    std::function<void(const std::string&)> log);
  ~PreemptionWatcher();  // Stop()s

  void Start();
  void Stop();
  // One poll of both paths (what the thread does every interval). Once an
  // interruption notice is held nothing is polled any more: the instance
  // is going away.
  void PollOnce();

 private:
  void NoteReachable(const Status& s);

  std::unique_ptr<MetadataSource> source_;
  PreemptionState* state_;
  const std::chrono::milliseconds interval_;
  std::function<void(const std::string&)> log_;
  bool reachable_ = true;  // touched by the polling thread only
  StopSignal stop_;
  std::thread thread_;
};

}  // namespace yard
