// WorkerPool: the HTTP server's threads. cpp-httplib serves a connection on
// one task for its whole life: reading the request, the handler, an event
// stream or long poll the handler holds open, keep-alive. A fixed pool is
// taken whole by slow clients (127 open streams, or sockets that send half a
// request, left /v1/health unanswered), so this one grows: a connection
// always finds a thread while fewer than `max_threads` are busy, and
// threads idle for `idle_exit` go away down to `min_threads`.
//
// Bounds on what one user may hold open are applied above this (per-user
// stream limits, read timeouts); this pool only guarantees that the limit
// of a single user cannot be everyone's limit.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <thread>

#include <httplib.h>

#include "common/thread_annotations.h"

namespace yard {

struct WorkerPoolOptions {
  size_t min_threads = 8;     // kept even when idle
  size_t max_threads = 4096;  // beyond: tasks wait for a free thread
  std::chrono::milliseconds idle_exit{30000};
};

// Thread-safe.
class WorkerPool : public httplib::TaskQueue {
 public:
  explicit WorkerPool(WorkerPoolOptions options = {});
  ~WorkerPool() override;
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void enqueue(std::function<void()> task) override;
  // Runs what was queued, then joins every thread. Idempotent.
  void shutdown() override;

  size_t threads() const;  // alive now (for tests and /metrics)

 private:
  void Work(std::list<std::thread>::iterator self);
  void SpawnLocked() REQUIRES(mu_);
  void JoinFinished();

  const WorkerPoolOptions options_;
  mutable Mutex mu_;
  std::condition_variable cv_;      // a task or shutdown for the workers
  std::condition_variable exited_;  // a worker left running_
  std::deque<std::function<void()>> tasks_ GUARDED_BY(mu_);
  std::list<std::thread> running_ GUARDED_BY(mu_);
  std::list<std::thread> finished_ GUARDED_BY(mu_);  // exited, to join
  size_t idle_ GUARDED_BY(mu_) = 0;
  bool shutdown_ GUARDED_BY(mu_) = false;
};

}  // namespace yard
