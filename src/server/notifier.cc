#include "server/notifier.h"

namespace yard {

Notifier::Slot& Notifier::SlotFor(const std::string& key) {
  auto& slot = slots_[key];
  if (!slot) slot = std::make_unique<Slot>();
  return *slot;
}

uint64_t Notifier::Version(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  return SlotFor(key).version;
}

void Notifier::Notify(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  Slot& s = SlotFor(key);
  ++s.version;
  s.cv.notify_all();
}

uint64_t Notifier::Wait(const std::string& key, uint64_t seen, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  Slot& s = SlotFor(key);
  s.cv.wait_for(lock, timeout, [&] { return s.version != seen; });
  return s.version;
}

}  // namespace yard
