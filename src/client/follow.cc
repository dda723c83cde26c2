#include "client/follow.h"

#include <chrono>
#include <thread>

#include "client/reply.h"
#include "common/frames.h"

namespace yard {

namespace {

// The event one frame of the framed stream carries (docs/api.md): 'j' the
// event's JSON; 'o' an output event's JSON without "data", '\n', its bytes.
// A discarded Json for frames that carry no event (keep-alive, unknown).
Json EventOfFrame(const Frame& f) {
  if (f.tag == frame_tag::kJson) return Json::parse(f.payload, nullptr, false);
  if (f.tag != frame_tag::kOutput) return Json(Json::value_t::discarded);
  size_t nl = f.payload.find('\n');
  if (nl == std::string_view::npos) return Json(Json::value_t::discarded);
  Json j = Json::parse(f.payload.substr(0, nl), nullptr, false);
  if (j.is_object()) j["data"] = std::string(f.payload.substr(nl + 1));
  return j;
}

// Calls `on_event` per event of the reply's body, framed or (from a server
// that predates frames) Server-Sent Events; false stops the stream.
class EventDecoder {
 public:
  explicit EventDecoder(std::function<bool(const Json&)> on_event)
      : on_event_(std::move(on_event)) {}

  bool Feed(const std::string& content_type, std::string_view bytes) {
    if (content_type.rfind(kFramesContentType, 0) != 0) {
      return sse_.Feed(
          bytes, [&](const SseEvent& ev) { return Deliver(Json::parse(ev.data, nullptr, false)); });
    }
    needs_end_ = content_type == kFramesToCloseContentType;
    frames_.Feed(bytes);
    while (std::optional<Frame> f = frames_.Next()) {
      if (f->tag == frame_tag::kEnd) ended_ = true;
      if (!Deliver(EventOfFrame(*f))) return false;
    }
    return !frames_.corrupt();
  }

  // Whether the stream so far ended cleanly as far as its format can tell:
  // a stream delimited by its connection must have sent its 'e' frame (a
  // server killed mid-stream also closes the connection).
  bool EndedCleanly() const { return !needs_end_ || ended_; }

 private:
  bool Deliver(const Json& j) { return j.is_discarded() || !j.is_object() || on_event_(j); }

  std::function<bool(const Json&)> on_event_;
  SseParser sse_;
  FrameReader frames_;
  bool needs_end_ = false, ended_ = false;
};

// The event without the bytes of its "data": a string "data" becomes "" (its
// type is what is checked), anything else stays, so that a Reply of it names
// the same mismatches as one of the whole event without copying the output.
Json WithoutOutputBytes(const Json& event) {
  Json head(Json::value_t::object);
  for (auto it = event.begin(); it != event.end(); ++it) {
    bool bytes = it.key() == "data" && it.value().is_string();
    head[it.key()] = bytes ? Json("") : it.value();
  }
  return head;
}

// The fields of an event that its readers take with Json::value() (the
// CLI's views, the SDKs' progress, the artifact mirror) have their types
// when present (docs/api.md, "Events"), so that value() cannot throw.
// `event` is an object (EventDecoder delivers no other).
Status CheckEventFields(const Json& event, const std::string& route) {
  Reply r(WithoutOutputBytes(event), route);
  for (const char* key : {"seq", "attempt", "exit_code"})
    YARD_RETURN_IF_ERROR(r.GetOr<int64_t>(key, 0).status());
  for (const char* key : {"kind", "state", "message", "data", "instance", "dir"})
    YARD_RETURN_IF_ERROR(r.GetOr<std::string>(key, "").status());
  for (const char* key : {"values", "entry"}) {
    if (!r.Has(key) || r.json()[key].is_null()) continue;
    YARD_ASSIGN_OR_RETURN(Reply object, r.Field(key));
    YARD_RETURN_IF_ERROR(object.AsObject().status());
  }
  if (!r.Has("entry") || r.json()["entry"].is_null()) return Status::Ok();
  Reply entry = *r.Field("entry");
  YARD_RETURN_IF_ERROR(entry.GetOr<std::string>("path", "").status());
  return entry.GetOr<int64_t>("size", 0).status();
}

}  // namespace

Status FollowEvents(const HttpClient& client, const std::string& job_id, const FollowOptions& opts,
                    const std::function<bool(const Json&)>& on_event) {
  int64_t cursor = opts.after;
  auto backoff = std::chrono::milliseconds(50);
  bool saw_final = false;
  for (;;) {
    bool consumer_stopped = false;
    // end=e: the framed stream without chunked encoding (docs/api.md).
    std::string path = "/v1/jobs/" + job_id + "/events?end=e&after=" + std::to_string(cursor) +
                       (opts.follow ? "" : "&follow=0");
    Status bad_event;
    const std::string route = "GET " + path;
    EventDecoder decoder([&](const Json& j) {
      bad_event = CheckEventFields(j, route);
      if (!bad_event.ok()) return false;
      int64_t seq = j.value("seq", int64_t{0});
      if (seq <= cursor) return true;  // already delivered before a reconnect
      cursor = seq;
      if (j.value("kind", "") == "state") {
        std::string st = j.value("state", "");
        saw_final = st == "succeeded" || st == "failed" || st == "cancelled";
      }
      backoff = std::chrono::milliseconds(50);
      if (!on_event(j)) {
        consumer_stopped = true;
        return false;
      }
      return true;
    });
    bool corrupt = false;
    Status s = client.StreamBytes(path, kFramesContentType,
                                  [&](const std::string& type, std::string_view bytes) {
                                    if (decoder.Feed(type, bytes)) return true;
                                    corrupt = !consumer_stopped;
                                    return false;
                                  });
    if (!bad_event.ok()) return bad_event;  // a server of another version: no retry helps
    if (consumer_stopped) return Status::Ok();
    if (corrupt) s = Internal("the event stream of job " + job_id + " is corrupt; reconnecting");
    if (s.ok() && !decoder.EndedCleanly())
      s = Unavailable("the event stream of job " + job_id + " was cut short; reconnecting");
    // A stream that ends cleanly before the final state was cut short
    // (e.g. the server died mid-response): go on from the cursor.
    if (s.ok() && (saw_final || !opts.follow)) return Status::Ok();
    if (s.ok()) s = Unavailable("the event stream ended early");
    // Only transport trouble is worth retrying; a 4xx will not get better.
    if (s.code() != Code::kUnavailable && s.code() != Code::kInternal) return s;
    if (opts.on_disconnect && !opts.on_disconnect(s)) return s;
    // The embedded server may have died: start it again (once, however many
    // followers notice) and go on from the cursor. A failed start is retried.
    if (Status revived = client.Revive(); !revived.ok() && opts.on_disconnect)
      opts.on_disconnect(revived);
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
}

}  // namespace yard
