// Status and StatusOr<T>: the one error type used across Trainyard.
//
// Library exceptions (SQLite, JSON, libtorch) are converted to Status where
// they enter our code. Callers write:
//
//   Status s = DoThing();
//   if (!s.ok()) return s;
//
// or use YARD_RETURN_IF_ERROR / YARD_ASSIGN_OR_RETURN. A broken invariant is a
// bug and aborts; a Status is for failures a caller can act on.
#pragma once

#include <cassert>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

namespace yard {

enum class Code {
  kOk = 0,
  kInvalidArgument,     // bad input from a user or peer (HTTP 400)
  kUnauthenticated,     // no or unknown token (HTTP 401)
  kPermissionDenied,    // token valid, resource not theirs (HTTP 403/404)
  kNotFound,            // HTTP 404
  kAlreadyExists,       // HTTP 409
  kFailedPrecondition,  // wrong state for the request (HTTP 409)
  kResourceExhausted,   // size limits, quotas, no capacity (HTTP 413); never a full disk
  kTooManyRequests,     // a per-user limit of things open at once (HTTP 429)
  kUnavailable,         // transient: peer down, retry later (HTTP 503)
  kDeadlineExceeded,    // a wait ran out
  kCancelled,
  kInternal,  // a bug or an unexpected system failure (HTTP 500)
  // A disk is full (HTTP 507 from the server: its disk, not the request,
  // is the problem; the same call succeeds once space is freed there).
  kInsufficientStorage,
};

// Stable lower-case name of a code, used on the wire ("invalid_argument").
const char* CodeName(Code code);
// Inverse of CodeName; unknown names map to kInternal.
Code CodeFromName(const std::string& name);
// HTTP status for a code.
int HttpStatusFor(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid_argument: message"
  std::string ToString() const;

  // Returns a copy whose message is prefixed with context ("reading x: ...").
  Status WithContext(const std::string& context) const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
inline Status Unauthenticated(std::string m) { return {Code::kUnauthenticated, std::move(m)}; }
inline Status PermissionDenied(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }
inline Status FailedPrecondition(std::string m) {
  return {Code::kFailedPrecondition, std::move(m)};
}
inline Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
inline Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }
inline Status ResourceExhausted(std::string m) { return {Code::kResourceExhausted, std::move(m)}; }
inline Status AlreadyExists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
inline Status DeadlineExceeded(std::string m) { return {Code::kDeadlineExceeded, std::move(m)}; }
inline Status Cancelled(std::string m) { return {Code::kCancelled, std::move(m)}; }

// Status from errno of a failed system call: "what: strerror(errno)". A full
// disk (ENOSPC, EDQUOT) is kInsufficientStorage with what to do: free space
// on the disk holding `folder` (named when given, with `df -h` to see it).
Status ErrnoStatus(const std::string& what, const std::string& folder = "");
// kInsufficientStorage: `what` failed because the disk holding `folder` is
// full; the message names the folder and says to free space there.
Status DiskFull(const std::string& what, const std::string& folder);

// Holds either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    if (status_.ok()) std::abort();                       // An OK status must carry a value.
  }
  StatusOr(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }

  // REQUIRES: ok().
  T& value() & {
    assert(ok());
    return *value_;
  }
  const T& value() const& {
    assert(ok());
    return *value_;
  }
  // By value, so `for (auto& x : F().value())` does not dangle.
  T value() && {
    assert(ok());
    return std::move(*value_);
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace yard

#define YARD_CONCAT_INNER(a, b) a##b
#define YARD_CONCAT(a, b) YARD_CONCAT_INNER(a, b)

#define YARD_RETURN_IF_ERROR(expr)       \
  do {                                   \
    ::yard::Status _yard_st = (expr);    \
    if (!_yard_st.ok()) return _yard_st; \
  } while (0)

#define YARD_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()

#define YARD_ASSIGN_OR_RETURN(lhs, expr) \
  YARD_ASSIGN_OR_RETURN_IMPL(YARD_CONCAT(_yard_so_, __LINE__), lhs, expr)
