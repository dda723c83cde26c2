#include "server/worker_pool.h"

#include <utility>

namespace yard {

WorkerPool::WorkerPool(WorkerPoolOptions options) : options_(options) {
  MutexLock lock(mu_);
  for (size_t i = 0; i < options_.min_threads; ++i) SpawnLocked();
}

WorkerPool::~WorkerPool() { shutdown(); }

void WorkerPool::SpawnLocked() {
  running_.emplace_back();
  auto self = std::prev(running_.end());
  *self = std::thread([this, self] { Work(self); });
}

void WorkerPool::enqueue(std::function<void()> task) {
  JoinFinished();
  {
    MutexLock lock(mu_);
    if (shutdown_) return;  // httplib stops accepting before it shuts us down
    tasks_.push_back(std::move(task));
    // A task never waits behind busy threads while the pool may grow.
    if (idle_ < tasks_.size() && running_.size() < options_.max_threads) SpawnLocked();
  }
  cv_.notify_one();
}

void WorkerPool::Work(std::list<std::thread>::iterator self) {
  MutexLock lock(mu_);
  for (;;) {
    ++idle_;
    bool woke = cv_.wait_for(lock.unique(), options_.idle_exit,
                             [this]() REQUIRES(mu_) { return !tasks_.empty() || shutdown_; });
    --idle_;
    if (!woke && running_.size() > options_.min_threads) break;  // idle too long: shrink
    if (tasks_.empty()) {
      if (shutdown_) break;
      continue;
    }
    std::function<void()> task = std::move(tasks_.front());
    tasks_.pop_front();
    lock.Unlock();
    task();
    lock.Lock();
  }
  // Our handle moves to finished_, joined by the next enqueue or shutdown.
  finished_.splice(finished_.end(), running_, self);
  exited_.notify_all();
}

void WorkerPool::JoinFinished() {
  std::list<std::thread> done;
  {
    MutexLock lock(mu_);
    done.swap(finished_);
  }
  for (std::thread& t : done) t.join();
}

void WorkerPool::shutdown() {
  MutexLock lock(mu_);
  shutdown_ = true;
  cv_.notify_all();
  // Tasks queued or running are finished first, as httplib's own pool does.
  exited_.wait(lock.unique(), [this]() REQUIRES(mu_) { return running_.empty(); });
  std::list<std::thread> done;
  done.swap(finished_);
  lock.Unlock();
  for (std::thread& t : done) t.join();
}

size_t WorkerPool::threads() const {
  MutexLock lock(mu_);
  return running_.size();
}

}  // namespace yard
