#include "agent/stop_signal.h"

namespace yard {

void StopSignal::Notify() {
  {
    MutexLock lock(mu_);
    stopped_ = true;
  }
  cv_.notify_all();
}

bool StopSignal::stopped() const {
  MutexLock lock(mu_);
  return stopped_;
}

bool StopSignal::WaitFor(std::chrono::milliseconds d) const {
  MutexLock lock(mu_);
  return cv_.wait_for(lock.unique(), d, [this]() REQUIRES(mu_) { return stopped_; });
}

}  // namespace yard
