// Notifier: wakes threads waiting for news about a key (a job's new events,
// an instance's new work). Each key has a version counter; a waiter passes
// the version it has seen and returns as soon as the key moves past it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace yard {

class Notifier {
 public:
  // Current version of `key` (0 if never notified).
  uint64_t Version(const std::string& key);
  // Bumps the version of `key` and wakes its waiters.
  void Notify(const std::string& key);
  // Waits until Version(key) != seen or `timeout` passes. Returns the
  // version at return.
  uint64_t Wait(const std::string& key, uint64_t seen, std::chrono::milliseconds timeout);

 private:
  struct Slot {
    std::condition_variable cv;
    uint64_t version = 0;
  };
  Slot& SlotFor(const std::string& key);  // REQUIRES: mu_ held

  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Slot>> slots_;  // GUARDED_BY(mu_)
};

}  // namespace yard
