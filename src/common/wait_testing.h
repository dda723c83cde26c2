// For tests only: waiting for a condition that another thread or process
// makes true, bounded so that a broken mechanism fails the test instead of
// hanging it. Not a sleep: it returns as soon as the condition holds.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace yard::test_support {

// Polls `condition` every `interval` until it holds (true) or `timeout`
// passes (false).
inline bool WaitFor(const std::function<bool()>& condition,
                    std::chrono::milliseconds timeout = std::chrono::seconds(10),
                    std::chrono::milliseconds interval = std::chrono::milliseconds(5)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
  return true;
}

}  // namespace yard::test_support
