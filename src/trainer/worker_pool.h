// WorkerPool: a fixed set of threads that run one function per index and
// wait for all of them, reused for every training step (starting threads per
// step would cost more than a small model's step).
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "common/thread_annotations.h"

namespace yard::trainer {

class WorkerPool {
 public:
  // Starts `size - 1` threads; index 0 always runs on the calling thread.
  // `on_start` runs once on each new thread before any work (used to set
  // per-thread library settings). REQUIRES: size >= 1.
  explicit WorkerPool(int size, std::function<void()> on_start = nullptr);
  ~WorkerPool();  // joins the threads
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  int size() const { return static_cast<int>(threads_.size()) + 1; }

  // Runs fn(0) .. fn(size()-1) concurrently and returns when all are done.
  // fn must not throw. Not reentrant: one RunAll at a time.
  void RunAll(const std::function<void(int)>& fn);

 private:
  void Loop(int index, const std::function<void()>& on_start);

  Mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  const std::function<void(int)>* fn_ GUARDED_BY(mu_) = nullptr;
  uint64_t generation_ GUARDED_BY(mu_) = 0;
  int pending_ GUARDED_BY(mu_) = 0;
  bool stop_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace yard::trainer
