// Clock: wall time, injectable so tests of cooling, prices, the ledger and the sim use a fake.
// Liveness (heartbeats, provisioning timeouts, placement deadlines) uses steady_clock, not this.
#pragma once

#include <atomic>
#include <chrono>

namespace yard {

class Clock {
 public:
  virtual ~Clock() = default;
  // Seconds since the Unix epoch.
  virtual double Now() const = 0;
};

class RealClock : public Clock {
 public:
  double Now() const override {
    using namespace std::chrono;
    return duration<double>(system_clock::now().time_since_epoch()).count();
  }
};

// A clock that moves only when told. Thread-safe.
class FakeClock : public Clock {
 public:
  explicit FakeClock(double start = 1'700'000'000.0) : now_(start) {}
  double Now() const override { return now_.load(); }
  void Advance(double seconds) { now_.store(now_.load() + seconds); }
  void Set(double t) { now_.store(t); }

 private:
  std::atomic<double> now_;
};

}  // namespace yard
