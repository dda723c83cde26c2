// HttpClient: JSON-over-HTTP calls to a Trainyard server, with the server's
// JSON errors turned back into Status, and Server-Sent Events streaming.
//
// The server address can move (the embedded server may restart on another
// port), so the client asks a resolver for the base URL on every call.
// Thread-safe: each call takes a connection of its own; finished calls leave
// theirs open (keep-alive) for the next call to the same URL, so a client
// making many calls opens few connections. Copies share those connections.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "client/tls_trust.h"
#include "common/status.h"

namespace yard {

using Json = nlohmann::json;

// Returns the current base URL ("http://127.0.0.1:8123"), or an error.
using UrlResolver = std::function<StatusOr<std::string>()>;

struct SseEvent {
  std::string id;    // the "id:" field ("" if none)
  std::string data;  // the "data:" lines joined with '\n'
};

class ConnectionPool;

class HttpClient {
 public:
  HttpClient(UrlResolver resolver, std::string token);
  // A fixed base URL.
  HttpClient(const std::string& base_url, std::string token);

  // GETs that fail for want of a server ask the reviver (below) and, if it
  // has one running again, ask once more.
  StatusOr<Json> Get(const std::string& path) const;
  StatusOr<Json> Post(const std::string& path, const Json& body) const;
  // PUT raw bytes.
  StatusOr<Json> PutBytes(const std::string& path, std::string_view bytes) const;
  // GET raw bytes (e.g. a blob).
  StatusOr<std::string> GetBytes(const std::string& path) const;

  // Opens `path` as an SSE stream and calls `on_event` per event until the
  // server ends the stream (returns OK), `on_event` returns false (OK), or the
  // connection fails (Unavailable). `last_event_id` is sent as Last-Event-ID
  // when non-empty.
  Status Stream(const std::string& path, const std::string& last_event_id,
                const std::function<bool(const SseEvent&)>& on_event) const;
  // Opens `path` asking for `accept` and hands the reply's body to
  // `on_bytes` piece by piece as it arrives, with the reply's Content-Type;
  // ends as Stream does (return false from `on_bytes` to stop: OK).
  Status StreamBytes(const std::string& path, const std::string& accept,
                     const std::function<bool(const std::string& content_type,
                                              std::string_view bytes)>& on_bytes) const;

  // How an https:// server's certificate is checked (tls_trust.h); set
  // before the first call.
  void set_tls_trust(TlsTrust trust) { trust_ = std::move(trust); }
  const TlsTrust& tls_trust() const { return trust_; }

  // Seconds for reads (long polls pass their own wait + margin).
  void set_read_timeout_s(int s) { read_timeout_s_ = s; }
  const std::string& token() const { return token_; }
  StatusOr<std::string> BaseUrl() const { return resolver_(); }

  // The server's blob folder when it runs on this machine as our own (the
  // embedded server of $YARD_HOME: Connect sets <home>/blobs), so that
  // chunks can be read from there instead of over HTTP, each still checked
  // against its hash (client/transfer.h); "" (a server elsewhere, or one
  // run by others): every chunk over HTTP.
  void set_local_blobs(std::string dir) { local_blobs_ = std::move(dir); }
  const std::string& local_blobs() const { return local_blobs_; }

  // A way to bring the server back when it is found gone (the embedded
  // server, which we start ourselves); none for a server run by others.
  void set_reviver(std::function<Status()> reviver) { reviver_ = std::move(reviver); }
  // Called after a transport failure: starts the server again if it is gone
  // and we own it. OK when there is nothing to do; an error when starting failed.
  Status Revive() const { return reviver_ ? reviver_() : Status::Ok(); }

 private:
  StatusOr<Json> GetOnce(const std::string& path) const;
  StatusOr<std::string> GetBytesOnce(const std::string& path) const;
  // True if `failure` may be a gone server and the reviver has one running.
  bool RevivedAfter(const Status& failure) const;

  UrlResolver resolver_;
  std::function<Status()> reviver_;
  std::string token_;
  std::string local_blobs_;
  TlsTrust trust_;
  int read_timeout_s_ = 120;
  std::shared_ptr<ConnectionPool> pool_;  // idle kept-alive connections
};

// Incremental Server-Sent Events parser. Not thread-safe.
class SseParser {
 public:
  // Feeds bytes, calling `emit` per complete event; false if `emit` asked
  // to stop.
  bool Feed(std::string_view bytes, const std::function<bool(const SseEvent&)>& emit);

 private:
  void HandleField(std::string_view line);

  std::string buf_;
  SseEvent current_;
  bool has_data_ = false;
};

// Turns an HTTP status + body into a Status (OK for 2xx), decoding the
// server's {"error": {...}} form.
Status StatusFromHttp(int http_status, const std::string& body);

}  // namespace yard
