// EventSender: the thread that posts spooled records to
// POST /v1/agents/{id}/events and records what the server acknowledged.
#pragma once

#include <string>
#include <thread>

#include "agent/agent_http.h"
#include "agent/event_spool.h"
#include "agent/retry.h"
#include "agent/stop_signal.h"

namespace yard {

class EventSender {
 public:
  // Batches hold up to about this much of records.
  static constexpr size_t kMaxBatchBytes = 4 << 20;

  // `spool` and `http` must outlive the sender.
  EventSender(EventSpool* spool, AgentHttp* http, std::string instance_id);
  ~EventSender();  // Stop()s

  void Start();
  // Ends the thread after the send in progress; unsent records stay spooled.
  void Stop();

  // One round: waits up to `wait` for a batch and sends it. Exposed for tests.
  void SendOnce(std::chrono::milliseconds wait);

 private:
  void Handle(const SpoolBatch& b, const StatusOr<HttpReply>& reply);
  void Retry(const SpoolBatch& b, const std::string& why);

  EventSpool* spool_;
  AgentHttp* http_;
  std::string path_;
  StopSignal stop_;
  Backoff backoff_;    // only touched by the sender thread
  std::string spare_;  // the last batch's buffer, reused (sender thread only)
  std::thread thread_;
};

}  // namespace yard
