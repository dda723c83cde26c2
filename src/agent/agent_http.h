// AgentHttp: the agent's calls to its own routes (/v1/agents/...), with
// what HttpClient does not offer:
//   - CancelAll() cuts calls in flight (a work long poll holds a connection
//     for up to 20 s; Stop() must not wait for it);
//   - the reply body is kept on errors (a 409 from /events carries "acked");
//   - TCP_NODELAY, so a small events batch is not held back by Nagle.
// Blob routes go through HttpClient.
#pragma once

#include <atomic>
#include <mutex>
#include <set>
#include <string>

#include "client/http_client.h"
#include "common/status.h"

namespace httplib {
class Client;
}

namespace yard {

struct HttpReply {
  int status = 0;
  std::string body;
  // Status of the reply: OK for 2xx, else decoded from the error body.
  Status ToStatus() const { return StatusFromHttp(status, body); }
  // The body as JSON (an empty body is {}); Internal if it is not JSON.
  StatusOr<Json> JsonBody() const;
};

// Thread-safe.
class AgentHttp {
 public:
  AgentHttp(UrlResolver resolver, std::string token);

  // Sends one request on a fresh connection. Transport failures (refused,
  // reset, timed out) are Unavailable; after CancelAll(), Cancelled. Any
  // HTTP status is a successful exchange: see HttpReply::ToStatus().
  StatusOr<HttpReply> Get(const std::string& path, int read_timeout_s);
  StatusOr<HttpReply> Post(const std::string& path, const Json& body, int read_timeout_s);
  // POST of a body that is already JSON text (e.g. spooled records).
  StatusOr<HttpReply> PostText(const std::string& path, const std::string& json_text,
                               int read_timeout_s);

  // Sends, then turns the reply into its JSON body or its error Status.
  StatusOr<Json> GetJson(const std::string& path, int read_timeout_s);
  StatusOr<Json> PostJson(const std::string& path, const Json& body, int read_timeout_s);

  // Makes every call in flight fail now and every later call fail at once.
  void CancelAll();

 private:
  template <typename Send>
  StatusOr<HttpReply> Exchange(const std::string& what, int read_timeout_s, Send&& send);

  UrlResolver resolver_;
  std::string token_;
  std::atomic<bool> cancelled_{false};
  std::mutex mu_;
  std::set<httplib::Client*> in_flight_;  // GUARDED_BY(mu_)
};

// Wraps `resolver` so that its failures read as Unavailable: not knowing
// where the server is right now (not started yet, moving to a new port) is
// a reason to retry, never to give up.
UrlResolver RetryingResolver(UrlResolver resolver);

}  // namespace yard
