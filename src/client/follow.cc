#include "client/follow.h"

#include <chrono>
#include <thread>

namespace yard {

Status FollowEvents(const HttpClient& client, const std::string& job_id, const FollowOptions& opts,
                    const std::function<bool(const Json&)>& on_event) {
  int64_t cursor = opts.after;
  auto backoff = std::chrono::milliseconds(50);
  bool saw_final = false;
  for (;;) {
    bool consumer_stopped = false;
    std::string path = "/v1/jobs/" + job_id + "/events?after=" + std::to_string(cursor) +
                       (opts.follow ? "" : "&follow=0");
    Status s = client.Stream(path, "", [&](const SseEvent& ev) {
      Json j = Json::parse(ev.data, nullptr, false);
      if (j.is_discarded()) return true;
      int64_t seq = j.value("seq", int64_t{0});
      if (seq <= cursor) return true;  // already delivered before a reconnect
      cursor = seq;
      if (j.value("kind", "") == "state") {
        std::string st = j.value("state", "");
        saw_final = st == "succeeded" || st == "failed" || st == "cancelled";
      }
      backoff = std::chrono::milliseconds(50);
      if (!on_event(j)) { consumer_stopped = true; return false; }
      return true;
    });
    if (consumer_stopped) return Status::Ok();
    // A stream that ends cleanly before the final state was cut short
    // (e.g. the server died mid-response): go on from the cursor.
    if (s.ok() && (saw_final || !opts.follow)) return Status::Ok();
    if (s.ok()) s = Unavailable("the event stream ended early");
    // Only transport trouble is worth retrying; a 4xx will not get better.
    if (s.code() != Code::kUnavailable && s.code() != Code::kInternal) return s;
    if (opts.on_disconnect && !opts.on_disconnect(s)) return s;
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
}

}  // namespace yard
