// Notifier: wakes threads waiting for news about a key (a job's new events,
// an instance's new work). Each key has a version; a waiter passes the
// version it has seen and returns as soon as the key moves past it.
//
// Versions come from one counter shared by all keys, so a key that was
// forgotten and is used again starts above every version it had before: a
// waiter holding an old version is woken, never stranded. Forget() drops a
// key that will see no more news (a finished job, an ended instance) once
// nobody waits on it, so a long-running server does not keep an entry for
// every job it ever ran.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/thread_annotations.h"

namespace yard {

class Notifier {
 public:
  // Current version of `key`.
  uint64_t Version(const std::string& key);
  // Moves `key` to a new version and wakes its waiters.
  void Notify(const std::string& key);
  // Waits until Version(key) != seen or `timeout` passes. Returns the
  // version at return. Spurious returns are possible: callers re-check.
  uint64_t Wait(const std::string& key, uint64_t seen, std::chrono::milliseconds timeout);
  // `key` will not be notified again: its entry goes now, or when its last
  // waiter returns.
  void Forget(const std::string& key);

  // Keys with an entry (for tests).
  size_t KeysHeld();

 private:
  struct Slot {
    std::condition_variable cv;
    uint64_t version = 0;
    int waiters = 0;
    bool forgotten = false;
  };
  Slot& SlotFor(const std::string& key) REQUIRES(mu_);

  Mutex mu_;
  uint64_t last_version_ GUARDED_BY(mu_) = 0;
  std::unordered_map<std::string, std::unique_ptr<Slot>> slots_ GUARDED_BY(mu_);
};

}  // namespace yard
