// EventSender: the thread that posts spooled records to
// POST /v1/agents/{id}/events and records what the server acknowledged.
#pragma once

#include <functional>
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

  // What a server's answer to a batch may carry besides "acked": the
  // instance's next assignment ({"assign": ...}, as a poll answers it).
  using OnWork = std::function<void(const Json& work)>;

  // `spool` and `http` must outlive the sender. With `on_work`, batches are
  // posted with work=1 (docs/api.md): the answer to one holding an exit
  // record may carry the next assignment, handed to `on_work` on the
  // sender's thread once the batch is acknowledged. A server that does not
  // know work=1 ignores it (the agent's poll brings the assignment).
  EventSender(EventSpool* spool, AgentHttp* http, std::string instance_id, OnWork on_work = {});
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
  OnWork on_work_;
  StopSignal stop_;
  Backoff backoff_;  // only touched by the sender thread
  std::thread thread_;
};

}  // namespace yard
