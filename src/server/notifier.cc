#include "server/notifier.h"

namespace yard {

Notifier::Slot& Notifier::SlotFor(const std::string& key) {
  auto& slot = slots_[key];
  if (!slot) {
    slot = std::make_unique<Slot>();
    slot->version = last_version_;  // above anything this key had before
  }
  return *slot;
}

uint64_t Notifier::Version(const std::string& key) {
  MutexLock lock(mu_);
  auto it = slots_.find(key);
  return it == slots_.end() ? last_version_ : it->second->version;
}

void Notifier::Notify(const std::string& key) {
  MutexLock lock(mu_);
  Slot& s = SlotFor(key);
  s.version = ++last_version_;
  s.cv.notify_all();
}

uint64_t Notifier::Wait(const std::string& key, uint64_t seen, std::chrono::milliseconds timeout) {
  MutexLock lock(mu_);
  Slot& s = SlotFor(key);
  ++s.waiters;
  s.cv.wait_for(lock.unique(), timeout, [&] { return s.version != seen; });
  uint64_t version = s.version;
  if (--s.waiters == 0 && s.forgotten) slots_.erase(key);
  return version;
}

void Notifier::Forget(const std::string& key) {
  MutexLock lock(mu_);
  auto it = slots_.find(key);
  if (it == slots_.end()) return;
  if (it->second->waiters == 0) {
    slots_.erase(it);
  } else {
    it->second->forgotten = true;
  }
}

size_t Notifier::KeysHeld() {
  MutexLock lock(mu_);
  return slots_.size();
}

}  // namespace yard
