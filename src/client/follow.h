// Following a job's event stream, exactly once per event, across dropped
// connections and server restarts (resuming with Last-Event-ID).
#pragma once

#include <functional>
#include <string>

#include "client/http_client.h"
#include "common/status.h"

namespace yard {

struct FollowOptions {
  int64_t after = 0;   // deliver events with seq > after
  bool follow = true;  // false: stop at the events stored now
  // Called once per reconnect attempt after a failure (e.g. to tell the
  // user); its argument is the failure. Return false to give up.
  std::function<bool(const Status&)> on_disconnect;
};

// Calls `on_event` with each event (parsed JSON) in seq order, each exactly
// once. An output event's "data" holds the bytes the job wrote, exactly (not
// necessarily UTF-8: dump with error_handler_t::replace). Returns OK when the stream ended (job
// final, or caught up when !follow), or when on_event returned false; an error when giving up.
Status FollowEvents(const HttpClient& client, const std::string& job_id, const FollowOptions& opts,
                    const std::function<bool(const Json&)>& on_event);

}  // namespace yard
