#include "common/status.h"

#include <cerrno>
#include <cstring>

namespace yard {
namespace {
struct CodeInfo {
  Code code;
  const char* name;
  int http;
};
constexpr CodeInfo kCodes[] = {
    {Code::kOk, "ok", 200},
    {Code::kInvalidArgument, "invalid_argument", 400},
    {Code::kUnauthenticated, "unauthenticated", 401},
    {Code::kPermissionDenied, "permission_denied", 403},
    {Code::kNotFound, "not_found", 404},
    {Code::kAlreadyExists, "already_exists", 409},
    {Code::kFailedPrecondition, "failed_precondition", 409},
    {Code::kResourceExhausted, "resource_exhausted", 413},
    {Code::kTooManyRequests, "too_many_requests", 429},
    {Code::kUnavailable, "unavailable", 503},
    {Code::kDeadlineExceeded, "deadline_exceeded", 504},
    {Code::kCancelled, "cancelled", 499},
    {Code::kInternal, "internal", 500},
    {Code::kInsufficientStorage, "insufficient_storage", 507},
};
}  // namespace

const char* CodeName(Code code) {
  for (const auto& c : kCodes)
    if (c.code == code) return c.name;
  return "internal";
}

Code CodeFromName(const std::string& name) {
  for (const auto& c : kCodes)
    if (name == c.name) return c.code;
  return Code::kInternal;
}

int HttpStatusFor(Code code) {
  for (const auto& c : kCodes)
    if (c.code == code) return c.http;
  return 500;
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  return std::string(CodeName(code_)) + ": " + message_;
}

Status Status::WithContext(const std::string& context) const {
  if (ok()) return *this;
  return Status(code_, context + ": " + message_);
}

Status ErrnoStatus(const std::string& what, const std::string& folder) {
  int err = errno;
  Code code = Code::kInternal;
  if (err == ENOENT) code = Code::kNotFound;
  if (err == EACCES || err == EPERM) code = Code::kPermissionDenied;
  if (err == EEXIST) code = Code::kAlreadyExists;
  if (err == ENOSPC || err == EDQUOT) {
    std::string why = what + ": " + std::strerror(err);
    if (!folder.empty()) return DiskFull(why, folder);
    return Status(Code::kInsufficientStorage, why + " (free space on that disk, then try again)");
  }
  return Status(code, what + ": " + std::strerror(err));
}

Status DiskFull(const std::string& what, const std::string& folder) {
  return Status(Code::kInsufficientStorage, what + ": the disk holding " + folder +
                                                " is full. Free space there (`df -h " + folder +
                                                "` shows it), then try again");
}

}  // namespace yard
