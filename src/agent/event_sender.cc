#include "agent/event_sender.h"

#include "agent/agent_log.h"

namespace yard {

namespace {

constexpr int kReadTimeoutS = 60;

std::optional<int64_t> AckedIn(const Json& body) {
  if (!body.is_object()) return std::nullopt;
  auto it = body.find("acked");
  if (it == body.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

std::string Describe(const SpoolBatch& b) {
  return "events of job " + b.job + " attempt " + std::to_string(b.attempt) + " from " +
         std::to_string(b.first);
}

}  // namespace

EventSender::EventSender(EventSpool* spool, AgentHttp* http, std::string instance_id,
                         OnWork on_work)
    : spool_(spool),
      http_(http),
      path_("/v1/agents/" + instance_id + "/events" + (on_work ? "?work=1" : "")),
      on_work_(std::move(on_work)) {}

EventSender::~EventSender() { Stop(); }

void EventSender::Start() {
  thread_ = std::thread([this] {
    while (!stop_.stopped()) SendOnce(std::chrono::seconds(1));
  });
}

void EventSender::Stop() {
  stop_.Notify();
  spool_->Wake();
  if (thread_.joinable()) thread_.join();
}

void EventSender::SendOnce(std::chrono::milliseconds wait) {
  std::optional<SpoolBatch> b = spool_->WaitBatch(kMaxBatchBytes, wait);
  if (!b) return;
  Handle(*b, http_->PostParts(path_, b->BodyParts(), kReadTimeoutS, b->ContentType()));
}

void EventSender::Handle(const SpoolBatch& b, const StatusOr<HttpReply>& reply) {
  if (!reply.ok()) {  // no answer (or the agent is stopping): try again later
    Retry(b, "");
    return;
  }
  StatusOr<Json> body = reply->JsonBody();
  std::optional<int64_t> acked = body.ok() ? AckedIn(*body) : std::nullopt;
  Status st = reply->ToStatus();
  if (acked && reply->status == 409) {
    // A gap: the server holds less than we thought; resend from there.
    spool_->Ack(b.job, b.attempt, *acked);
  } else if (acked && st.ok()) {
    spool_->Ack(b.job, b.attempt, *acked);
    // After the ack: the exit is delivered before the next job starts.
    if (on_work_ && body->contains("work") && (*body)["work"].is_object())
      on_work_((*body)["work"]);
    if (*acked >= b.first)
      backoff_.Reset();
    else
      Retry(b, "the server stored none of them");
  } else if (st.code() == Code::kNotFound || st.code() == Code::kPermissionDenied ||
             reply->status == 409) {
    AgentLog("dropping " + Describe(b) + ": the server refuses them (" + st.ToString() + ")");
    spool_->Drop(b.job, b.attempt);
  } else {
    Retry(b, st.ok()                           ? "reply without \"acked\""
             : st.code() == Code::kUnavailable ? ""
                                               : st.ToString());
  }
}

void EventSender::Retry(const SpoolBatch& b, const std::string& why) {
  // Unavailable is the normal state of a restarting server: not worth a log line.
  if (!why.empty()) AgentLog("retrying " + Describe(b) + ": " + why);
  spool_->Defer(b.job, b.attempt, backoff_.Next());
}

}  // namespace yard
