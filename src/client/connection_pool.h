// ConnectionPool: kept-alive httplib connections to one server, shared by
// the CLI/SDK client (HttpClient) and the agent (AgentHttp): one place that
// sets a connection up (timeouts, keep-alive, TCP_NODELAY, TLS trust) and
// decides when an idle one may serve again.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "client/tls_trust.h"
#include "common/thread_annotations.h"

namespace httplib {
class Client;
}

namespace yard {

// A new connection to `url` as every caller sets one up: 5 s to connect,
// 60 s to write, kept alive, TCP_NODELAY; an https server checked as `trust`
// says. nullptr for a URL httplib cannot use. The caller sets the read
// timeout (it depends on the call).
std::unique_ptr<httplib::Client> NewServerConnection(const std::string& url, const TlsTrust& trust);

// Idle connections to one base URL; a call takes one (or a new one) and
// gives it back once its exchange is complete. Thread-safe.
class ConnectionPool {
 public:
  // Keeps at most `max_idle` idle connections, each reused only within
  // 1.5 s of its return (KeepIdleFor: the server closes one idle for 2 s).
  explicit ConnectionPool(size_t max_idle);
  ~ConnectionPool();  // in the .cc, where httplib::Client is complete
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  // An idle connection to `url`, else a new one (NewServerConnection). A
  // `url` other than the last one drops every idle connection (the server
  // moved).
  std::unique_ptr<httplib::Client> Take(const std::string& url, const TlsTrust& trust);
  // Keeps `cli`, a connection to `url` after a whole exchange, for the next
  // Take; closes it when the pool is full or `url` is no longer the server's.
  void Give(std::unique_ptr<httplib::Client> cli, const std::string& url);
  // Closes every idle connection.
  void Clear();

 private:
  struct Idle {
    std::unique_ptr<httplib::Client> cli;
    std::chrono::steady_clock::time_point since;  // returned then
  };
  const size_t max_idle_;
  Mutex mu_;
  std::string url_ GUARDED_BY(mu_);         // the URL of idle_
  std::vector<Idle> idle_ GUARDED_BY(mu_);  // the most recently returned last
};

}  // namespace yard
