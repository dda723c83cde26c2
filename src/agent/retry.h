// Retrying transient failures: the agent outlives server restarts, so every
// call to the server is retried while it answers Unavailable.
#pragma once

#include <chrono>
#include <type_traits>

#include "agent/stop_signal.h"
#include "common/status.h"

namespace yard {

// Exponential backoff: 50 ms, 100 ms, ... capped at 1 s.
class Backoff {
 public:
  std::chrono::milliseconds Next();
  void Reset() { delay_ = kFirst; }

 private:
  static constexpr std::chrono::milliseconds kFirst{50};
  static constexpr std::chrono::milliseconds kMax{1000};
  std::chrono::milliseconds delay_ = kFirst;
};

// True for failures that a later retry may cure (the server is down,
// restarting, overloaded or broken for a moment).
bool IsTransient(const Status& s);

inline const Status& StatusOf(const Status& s) { return s; }
template <typename T>
const Status& StatusOf(const StatusOr<T>& s) {
  return s.status();
}

// Calls `fn` (returning Status or StatusOr) until it returns something other
// than Unavailable, backing off between tries. Once `stop` fires, returns
// Cancelled instead of trying again.
template <typename Fn>
auto RetryUnavailable(const StopSignal& stop, Fn&& fn) -> decltype(fn()) {
  Backoff backoff;
  for (;;) {
    auto result = fn();
    if (StatusOf(result).code() != Code::kUnavailable) return result;
    if (stop.WaitFor(backoff.Next())) return Cancelled("agent stopping");
  }
}

}  // namespace yard
