// AgentHttp: the agent's calls to its own routes (/v1/agents/...), with
// what HttpClient does not offer:
//   - CancelAll() cuts calls in flight (a work long poll holds a connection
//     for up to 20 s; Stop() must not wait for it);
//   - the reply body is kept on errors (a 409 from /events carries "acked");
//   - connections kept alive and reused, from the ConnectionPool HttpClient
//     uses too (each thread of the agent calls one after another; a fresh
//     connection per call cost the server an accept and a worker hand-off
//     per job transition).
// Blob routes go through HttpClient.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "client/connection_pool.h"
#include "client/http_client.h"
#include "common/status.h"
#include "common/thread_annotations.h"

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
  AgentHttp(UrlResolver resolver, std::string token, TlsTrust trust = {});
  ~AgentHttp();

  // Sends one request on an idle kept-alive connection to the current URL,
  // or a new one. Transport failures (refused,
  // reset, timed out) are Unavailable; a server certificate not trusted
  // (client/tls_trust.h) FailedPrecondition; after CancelAll(), Cancelled. Any
  // HTTP status is a successful exchange: see HttpReply::ToStatus().
  StatusOr<HttpReply> Get(const std::string& path, int read_timeout_s);
  StatusOr<HttpReply> Post(const std::string& path, const Json& body, int read_timeout_s);
  // POST of a body that is ready to send (e.g. spooled records), of
  // `content_type`.
  StatusOr<HttpReply> PostText(const std::string& path, const std::string& text, int read_timeout_s,
                               const char* content_type = "application/json");
  // POST of a body made of `parts` in order, each written to the socket from
  // where it is (nothing is copied together); they must outlive the call.
  StatusOr<HttpReply> PostParts(const std::string& path, const std::vector<std::string_view>& parts,
                                int read_timeout_s, const char* content_type);

  // Sends, then turns the reply into its JSON body or its error Status.
  StatusOr<Json> GetJson(const std::string& path, int read_timeout_s);
  StatusOr<Json> PostJson(const std::string& path, const Json& body, int read_timeout_s);

  // Makes every call in flight fail now and every later call fail at once.
  void CancelAll();

 private:
  template <typename Send>
  StatusOr<HttpReply> Exchange(const std::string& what, int read_timeout_s, Send&& send);
  // An idle connection to `url` or a new one (nullptr for a bad URL).
  std::unique_ptr<httplib::Client> Checkout(const std::string& url);
  // Keeps `cli`, a connection to `url`, for the next call, unless cancelled
  // or the pool is full.
  void Return(std::unique_ptr<httplib::Client> cli, const std::string& url);

  UrlResolver resolver_;
  std::string token_;
  TlsTrust trust_;
  std::atomic<bool> cancelled_{false};
  ConnectionPool pool_;  // idle kept-alive connections (client/connection_pool.h)
  Mutex mu_;
  std::set<httplib::Client*> in_flight_ GUARDED_BY(mu_);
};

// Wraps `resolver` so that its failures read as Unavailable: not knowing
// where the server is right now (not started yet, moving to a new port) is
// a reason to retry, never to give up.
UrlResolver RetryingResolver(UrlResolver resolver);

// The server's URL from `url_file` (the server's server.json: {"url": ...}),
// as `yard agent --server-file` finds it: asked before every request, so
// that an agent follows a server restarted on another port. The file is
// read again only when it is another file or changed (stat: device, inode,
// size, mtime, ctime; the server replaces it whole, WriteFileAtomic), not
// per request (open, read, JSON parse: ≈ 6 % of an agent's CPU under
// bench_throughput). A file changed (mtime or ctime) within the last
// `racy` (2 s) is read every time, so that a second change within one
// timestamp tick is not missed. Fails while the file is missing (ReadFile's
// error) or not of that shape (Unavailable); RetryingResolver makes both
// Unavailable.
class ServerFileUrl {
 public:
  explicit ServerFileUrl(std::string url_file,
                         std::chrono::nanoseconds racy = std::chrono::seconds(2))
      : path_(std::move(url_file)), racy_(racy) {}
  StatusOr<std::string> Get();
  // How many times Get read the file (tests).
  int reads() const;

 private:
  struct Stamp {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    bool operator==(const Stamp&) const = default;
  };
  static std::optional<Stamp> StampOf(const std::string& path);

  const std::string path_;
  const std::chrono::nanoseconds racy_;
  mutable Mutex mu_;
  std::optional<std::pair<Stamp, std::string>> known_ GUARDED_BY(mu_);
  int reads_ GUARDED_BY(mu_) = 0;
};

// A resolver asking one ServerFileUrl of `url_file`.
UrlResolver ServerFileResolver(const std::string& url_file);

}  // namespace yard
