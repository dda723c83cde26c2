#include "trainer/worker_pool.h"

namespace yard::trainer {

WorkerPool::WorkerPool(int size, std::function<void()> on_start) {
  for (int i = 1; i < size; ++i) {
    threads_.emplace_back([this, i, on_start] { Loop(i, on_start); });
  }
}

WorkerPool::~WorkerPool() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkerPool::RunAll(const std::function<void(int)>& fn) {
  if (threads_.empty()) {
    fn(0);
    return;
  }
  {
    MutexLock lock(mu_);
    fn_ = &fn;
    pending_ = static_cast<int>(threads_.size());
    ++generation_;
  }
  work_cv_.notify_all();
  fn(0);
  MutexLock lock(mu_);
  done_cv_.wait(lock.unique(), [this]() REQUIRES(mu_) { return pending_ == 0; });
  fn_ = nullptr;
}

void WorkerPool::Loop(int index, const std::function<void()>& on_start) {
  if (on_start) on_start();
  uint64_t seen = 0;
  MutexLock lock(mu_);
  while (true) {
    work_cv_.wait(lock.unique(), [&]() REQUIRES(mu_) { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    const auto* fn = fn_;
    lock.Unlock();
    (*fn)(index);
    lock.Lock();
    if (--pending_ == 0) done_cv_.notify_one();
  }
}

}  // namespace yard::trainer
