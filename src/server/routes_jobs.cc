// /v1/jobs: submit, list, read, cancel, events (SSE), artifacts.
#include <charconv>

#include <httplib.h>

#include "common/frames.h"
#include "server/http_server.h"
#include "server/job_spec.h"
#include "server/request_json.h"
#include "server/token_auth.h"

namespace yard {
namespace {

// An event stream writes its frames in pieces of about this size.
constexpr size_t kFlushBytes = 1 << 20;

Status Submit(ApiContext& ctx, Call& call) {
  YARD_ASSIGN_OR_RETURN(Json spec, ParseJobSpec(call.Body()));
  YARD_ASSIGN_OR_RETURN(JobRecord job, ctx.controller->SubmitJob(call.who.user, spec));
  call.ReplyJson({{"job", job.ToApiJson()}}, 201);
  return Status::Ok();
}

Status ListJobs(ApiContext& ctx, Call& call) {
  int limit = std::clamp(std::atoi(call.Query("limit", "100").c_str()), 1, 10000);
  YARD_ASSIGN_OR_RETURN(
      auto jobs, ctx.store->ListJobs(call.who.user, call.Query("state"), call.Query("q"), limit));
  Json out = Json::array();
  for (const auto& j : jobs) out.push_back(j.ToApiJson());
  call.ReplyJson({{"jobs", out}});
  return Status::Ok();
}

Status GetOne(ApiContext& ctx, Call& call) {
  YARD_ASSIGN_OR_RETURN(JobRecord job, ctx.controller->GetJobFor(call.who.user, call.Param(1)));
  call.ReplyJson({{"job", job.ToApiJson()}});
  return Status::Ok();
}

Status Cancel(ApiContext& ctx, Call& call) {
  YARD_ASSIGN_OR_RETURN(JobRecord job, ctx.controller->CancelJob(call.who.user, call.Param(1)));
  call.ReplyJson({{"job", job.ToApiJson()}});
  return Status::Ok();
}

Status Artifacts(ApiContext& ctx, Call& call) {
  YARD_ASSIGN_OR_RETURN(JobRecord job, ctx.controller->GetJobFor(call.who.user, call.Param(1)));
  YARD_ASSIGN_OR_RETURN(Json list, ctx.store->ListArtifacts(job.id));
  call.ReplyJson({{"artifacts", list}});
  return Status::Ok();
}

// The stored text is the event's JSON on one line (newlines inside strings
// are escaped), so it is a valid data field as it is: no parse, no dump.
// Output bytes stored apart are encoded here, for this stream only (invalid
// UTF-8 becomes U+FFFD: JSON text cannot hold it).
void AppendSseFrame(const StoredEvent& e, std::string* out) {
  out->append("id: ").append(std::to_string(e.seq)).append("\ndata: ");
  if (e.output && e.json.size() > 1) {
    out->append("{\"data\":")
        .append(Json(*e.output).dump(-1, ' ', false, Json::error_handler_t::replace))
        .append(",")
        .append(e.json, 1);
  } else {
    out->append(e.json);
  }
  out->append("\n\n");
}

// The framed stream (Accept: application/x-yard-frames; docs/api.md): 'j'
// the event's JSON; 'o' an output event, its JSON without "data", '\n',
// then its bytes exactly as the job wrote them.
void AppendRawFrame(const StoredEvent& e, std::string* out) {
  if (!e.output) {
    AppendFrame(frame_tag::kJson, e.json, out);
    return;
  }
  AppendFrameHeader(frame_tag::kOutput, e.json.size() + 1 + e.output->size(), out);
  out->append(e.json).append("\n").append(*e.output);
}

struct StreamFormat {
  void (*append)(const StoredEvent&, std::string*);
  std::string keep_alive;
  std::string end;  // written at a clean end ("": nothing)
};

std::string EmptyFrame(char tag) {
  std::string f;
  AppendFrame(tag, "", &f);
  return f;
}

const StreamFormat kSse{AppendSseFrame, ": keep-alive\n\n", ""};
const StreamFormat kFrames{AppendRawFrame, EmptyFrame(frame_tag::kKeepAlive), ""};
// The framed stream delimited by the connection's end (?end=e): the last
// frame of a clean end is 'e', so that a cut is never taken for the end.
const StreamFormat kFramesToClose{AppendRawFrame, EmptyFrame(frame_tag::kKeepAlive),
                                  EmptyFrame(frame_tag::kEnd)};

// Ends the stream cleanly: the format's end mark, then done.
bool EndStream(const StreamFormat& format, httplib::DataSink& sink) {
  if (!format.end.empty() && !sink.write(format.end.data(), format.end.size())) return false;
  sink.done();
  return true;
}

// Whether the caller's token still holds, looked at most once a second:
// a revoked or expired token ends its open streams within about a second.
class TokenWatch {
 public:
  TokenWatch(ApiContext& ctx, const TokenInfo& who) : ctx_(ctx), who_(who) {}
  bool Holds() {
    auto now = std::chrono::steady_clock::now();
    if (gone_ || !ctx_.tokens || now - last_ < std::chrono::seconds(1)) return !gone_;
    last_ = now;
    gone_ = !ctx_.tokens->StillValid(who_).ok();
    return !gone_;
  }

 private:
  ApiContext& ctx_;
  const TokenInfo& who_;
  bool gone_ = false;  // once gone, for good
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

// Waits up to 15 s for news of `key` in one-second slices, ending early
// when the token gives out. Returns the notifier's version (== seen: none).
uint64_t WaitForNews(ApiContext& ctx, const std::string& key, uint64_t seen, TokenWatch& watch) {
  for (int i = 0; i < 15; ++i) {
    uint64_t v = ctx.controller->notifier().Wait(key, seen, std::chrono::seconds(1));
    if (v != seen || !watch.Holds()) return v;
  }
  return seen;
}

// Streams events after `after` until the job's final event was sent (or,
// when !follow, until the events stored now were sent). Holds at most one
// read of the store (ReadEventText's byte bound) and one piece of frames in
// memory: a follower slower than the job makes the write wait, not the
// server buffer. Ends (cleanly, so that a follower calls again and hears
// why) once the caller's token is revoked or expires.
bool StreamEvents(ApiContext& ctx, const TokenInfo& who, const std::string& job_id, int64_t after,
                  bool follow, const StreamFormat& format, httplib::DataSink& sink) {
  const std::string key = "job:" + job_id;
  TokenWatch watch(ctx, who);
  int64_t cursor = after;
  std::string frames;
  for (;;) {
    if (!watch.Holds()) {
      if (&format == &kSse) {
        std::string note = ": the token of this stream was revoked or has expired\n\n";
        sink.write(note.data(), note.size());
      }
      return EndStream(format, sink);
    }
    uint64_t seen = ctx.controller->notifier().Version(key);
    StatusOr<std::vector<StoredEvent>> batch = ctx.store->ReadEventText(job_id, cursor, 2000);
    if (!batch.ok()) return false;
    frames.clear();  // its memory is kept from one read to the next
    for (const auto& e : *batch) {
      format.append(e, &frames);
      cursor = e.seq;
      if (frames.size() >= kFlushBytes) {
        if (!sink.write(frames.data(), frames.size())) return false;
        frames.clear();
      }
    }
    if (!frames.empty() && !sink.write(frames.data(), frames.size())) return false;
    if (!batch->empty()) continue;
    StatusOr<JobRecord> job = ctx.controller->GetJobFor(who.user, job_id);
    if (!job.ok()) return false;
    if (!follow || (job_state::IsTerminal(job->state) && cursor >= job->last_seq))
      return EndStream(format, sink);
    if (WaitForNews(ctx, key, seen, watch) == seen) {
      if (!sink.write(format.keep_alive.data(), format.keep_alive.size())) return false;
    }
  }
}

// An event sequence number to resume after: digits only, not coerced (a
// bogus cursor silently read as 0 would replay the whole stream).
StatusOr<int64_t> EventCursor(const std::string& where, const std::string& text) {
  int64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || n < 0)
    return InvalidArgument(where +
                           " must be the sequence number of an event (digits, >= 0), got '" +
                           text.substr(0, 40) + "'");
  return n;
}

Status JobEvents(ApiContext& ctx, Call& call) {
  YARD_ASSIGN_OR_RETURN(JobRecord job, ctx.controller->GetJobFor(call.who.user, call.Param(1)));
  std::string last_id = call.req.get_header_value("Last-Event-ID");
  YARD_ASSIGN_OR_RETURN(int64_t after, last_id.empty()
                                           ? EventCursor("?after", call.Query("after", "0"))
                                           : EventCursor("Last-Event-ID", last_id));
  bool follow = call.Query("follow", "1") != "0";
  TokenInfo who = call.who;
  std::string id = job.id;
  StreamLimits::Lease lease;  // held by the stream's callback while it is open
  if (follow && ctx.streams) {
    YARD_ASSIGN_OR_RETURN(lease, ctx.streams->Open(who.user));
  }
  call.res.set_header("Cache-Control", "no-cache");
  bool framed = call.req.get_header_value("Accept") == kFramesContentType;
  // ?end=e from a client that closes the connection after the reply: the
  // body goes out as it is, delimited by the connection's end (httplib's
  // chunked writer copies every piece twice), its clean end marked by an
  // 'e' frame. Others get the chunked stream as before.
  bool to_close =
      framed && call.Query("end") == "e" && call.req.get_header_value("Connection") == "close";
  const StreamFormat* format = !framed ? &kSse : to_close ? &kFramesToClose : &kFrames;
  auto provider = [&ctx, who, id, after, follow, format, lease](size_t, httplib::DataSink& sink) {
    return StreamEvents(ctx, who, id, after, follow, *format, sink);
  };
  if (to_close)
    call.res.set_content_provider(kFramesToCloseContentType, provider);
  else
    call.res.set_chunked_content_provider(framed ? kFramesContentType : "text/event-stream",
                                          provider);
  return Status::Ok();
}

}  // namespace

std::vector<Route> JobRoutes(ApiContext& ctx) {
  std::string job = kJobPath;
  return {
      {"POST", "/v1/jobs", Access::kUser, Bind(ctx, Submit)},
      {"GET", "/v1/jobs", Access::kUser, Bind(ctx, ListJobs)},
      {"GET", job, Access::kUser, Bind(ctx, GetOne)},
      {"POST", job + "/cancel", Access::kUser, Bind(ctx, Cancel)},
      {"GET", job + "/events", Access::kUser, Bind(ctx, JobEvents)},
      {"GET", job + "/artifacts", Access::kUser, Bind(ctx, Artifacts)},
  };
}

}  // namespace yard
