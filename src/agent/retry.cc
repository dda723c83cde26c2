#include "agent/retry.h"

#include <algorithm>

namespace yard {

std::chrono::milliseconds Backoff::Next() {
  std::chrono::milliseconds d = delay_;
  delay_ = std::min(delay_ * 2, kMax);
  return d;
}

bool IsTransient(const Status& s) {
  switch (s.code()) {
    case Code::kUnavailable:
    case Code::kInternal:
    case Code::kDeadlineExceeded:
    case Code::kResourceExhausted:
    case Code::kInsufficientStorage:  // the server's disk: room may return
      return true;
    default:
      return false;
  }
}

}  // namespace yard
