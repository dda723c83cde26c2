#include "client/connection_pool.h"

#include <httplib.h>

namespace yard {
namespace {
// How long an idle connection is reused (KeepIdleFor).
constexpr auto kMaxIdleAge = std::chrono::milliseconds(1500);
}  // namespace

std::unique_ptr<httplib::Client> NewServerConnection(const std::string& url,
                                                     const TlsTrust& trust) {
  std::unique_ptr<httplib::Client> cli = NewHttplibClient(url, trust);
  if (!cli) return nullptr;
  cli->set_connection_timeout(5, 0);
  cli->set_write_timeout(60, 0);
  cli->set_keep_alive(true);
  // Headers and body are two writes: without this, a kept-alive connection
  // waits for the server's delayed ACK (40 ms) between them.
  cli->set_tcp_nodelay(true);
  return cli;
}

ConnectionPool::ConnectionPool(size_t max_idle) : max_idle_(max_idle) {}

ConnectionPool::~ConnectionPool() = default;

std::unique_ptr<httplib::Client> ConnectionPool::Take(const std::string& url,
                                                      const TlsTrust& trust) {
  {
    MutexLock lock(mu_);
    if (url_ != url) idle_.clear();  // the server moved: old connections are useless
    url_ = url;
    while (!idle_.empty()) {
      Idle idle = std::move(idle_.back());
      idle_.pop_back();
      if (KeepIdleFor(idle.since, kMaxIdleAge)) return std::move(idle.cli);
    }
  }
  return NewServerConnection(url, trust);
}

void ConnectionPool::Give(std::unique_ptr<httplib::Client> cli, const std::string& url) {
  MutexLock lock(mu_);
  if (url == url_ && idle_.size() < max_idle_)
    idle_.push_back({std::move(cli), std::chrono::steady_clock::now()});
}

void ConnectionPool::Clear() {
  MutexLock lock(mu_);
  idle_.clear();
}

}  // namespace yard
