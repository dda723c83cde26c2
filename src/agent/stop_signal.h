// StopSignal: a sticky "stop now" flag that sleeping threads can wait on.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "common/thread_annotations.h"

namespace yard {

// Thread-safe. Once notified it stays notified.
class StopSignal {
 public:
  void Notify();
  bool stopped() const;
  // Sleeps up to `d`; returns true if stopped (before or during the wait).
  bool WaitFor(std::chrono::milliseconds d) const;

 private:
  mutable Mutex mu_;
  mutable std::condition_variable cv_;
  bool stopped_ GUARDED_BY(mu_) = false;
};

}  // namespace yard
