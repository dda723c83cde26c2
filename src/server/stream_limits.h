// StreamLimits: how many of something each user may hold at once: event
// streams open (a stream holds a server thread for as long as the client
// keeps it) or requests in flight. The limit keeps one user (or one runaway
// script) from holding them all.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/status.h"
#include "common/thread_annotations.h"

namespace yard {

// Thread-safe.
class StreamLimits {
 public:
  // `what` names the things counted in the 429 ("event streams open"),
  // `advice` says what to do about it.
  explicit StreamLimits(int per_user, std::string what = "event streams open",
                        std::string advice =
                            "close some (each `yard logs -f`, `yard fit` or dashboard "
                            "tab holds one) and try again")
      : per_user_(per_user), what_(std::move(what)), advice_(std::move(advice)) {}

  // A lease while the stream is open: held by the stream's callback, it is
  // given back when the callback is destroyed. ResourceExhausted (429)
  // naming the limit when `user` holds `per_user` already.
  using Lease = std::shared_ptr<void>;
  StatusOr<Lease> Open(const std::string& user);

  int open(const std::string& user) const;

 private:
  void Close(const std::string& user);

  const int per_user_;
  const std::string what_;
  const std::string advice_;
  mutable Mutex mu_;
  std::map<std::string, int> open_ GUARDED_BY(mu_);
};

}  // namespace yard
