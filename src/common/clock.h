// Clock: wall time and a monotonic time, injectable so that tests of
// cooling, prices, the ledger, the sim and the liveness rules (heartbeats,
// provisioning timeouts, Slurm's pending timeout, token rate windows) run on
// a fake that moves only when told. Code that only measures how long
// something took (logs, pass statistics) or bounds a real wait (a long
// poll, a retry loop) reads std::chrono::steady_clock itself.
#pragma once

#include <atomic>
#include <chrono>

namespace yard {

class Clock {
 public:
  virtual ~Clock() = default;
  // Seconds since the Unix epoch (prices, records, deadlines users see).
  virtual double Now() const = 0;
  // Seconds on a clock that never jumps (how long something was silent):
  // differences only; a wall-clock step must not lose every instance.
  virtual double Monotonic() const = 0;
};

class RealClock : public Clock {
 public:
  double Now() const override {
    using namespace std::chrono;
    return duration<double>(system_clock::now().time_since_epoch()).count();
  }
  double Monotonic() const override {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
  }
};

// A clock that moves only when told. Thread-safe. The two times move
// apart: Advance and Set move the wall time (prices, cooling, deadlines),
// AdvanceMonotonic the liveness time (how long an agent was silent). A test
// of cooling then needs no agents' heartbeats, and a test of liveness says
// which time it moves.
class FakeClock : public Clock {
 public:
  explicit FakeClock(double start = 1'700'000'000.0) : now_(start) {}
  double Now() const override { return now_.load(); }
  double Monotonic() const override { return monotonic_.load(); }
  // Each a single atomic step: two threads advancing at once add both.
  void Advance(double seconds) { now_.fetch_add(seconds); }
  void AdvanceMonotonic(double seconds) { monotonic_.fetch_add(seconds); }
  void Set(double t) { now_.store(t); }

 private:
  std::atomic<double> now_;
  std::atomic<double> monotonic_{1000.0};
};

}  // namespace yard
