#include "server/stream_limits.h"

namespace yard {

StatusOr<StreamLimits::Lease> StreamLimits::Open(const std::string& user) {
  {
    MutexLock lock(mu_);
    int& n = open_[user];
    if (n >= per_user_)
      return Status(Code::kTooManyRequests, "you have " + std::to_string(n) + " " + what_ +
                                                ", the limit per user (" +
                                                std::to_string(per_user_) + "): " + advice_);
    ++n;
  }
  return Lease(nullptr, [this, user](void*) { Close(user); });
}

void StreamLimits::Close(const std::string& user) {
  MutexLock lock(mu_);
  auto it = open_.find(user);
  if (it != open_.end() && --it->second <= 0) open_.erase(it);
}

int StreamLimits::open(const std::string& user) const {
  MutexLock lock(mu_);
  auto it = open_.find(user);
  return it == open_.end() ? 0 : it->second;
}

}  // namespace yard
