// StreamLimits: how many event streams each user may hold open at once.
// A stream holds a server thread for as long as the client keeps it; the
// limit keeps one user (or one runaway script) from holding them all.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/status.h"

namespace yard {

// Thread-safe.
class StreamLimits {
 public:
  explicit StreamLimits(int per_user) : per_user_(per_user) {}

  // A lease while the stream is open: held by the stream's callback, it is
  // given back when the callback is destroyed. ResourceExhausted (429)
  // naming the limit when `user` holds `per_user` already.
  using Lease = std::shared_ptr<void>;
  StatusOr<Lease> Open(const std::string& user);

  int open(const std::string& user) const;

 private:
  void Close(const std::string& user);

  const int per_user_;
  mutable std::mutex mu_;
  std::map<std::string, int> open_;  // GUARDED_BY(mu_)
};

}  // namespace yard
