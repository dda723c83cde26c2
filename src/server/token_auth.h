// API tokens on the server: what a scope opens, expiry and revocation, the
// last-use time, and slowing down an address that guesses tokens.
//
// One model for every user-facing credential. A token has one scope:
//   read    GET routes of the user's own jobs, machines, cost; event
//           streams; the dashboard (sign-in included)
//   submit  read, and what changes things: submit, cancel, upload chunks,
//           end instances
//   admin   submit, and the user's own tokens (GET/POST /v1/tokens)
//   metrics GET /metrics only (figures across all users: for scrapers)
// read < submit < admin; metrics stands apart. A dashboard session carries
// the scope of the token that opened it, and ends with it.
//
// Tokens are found by the SHA-256 of what the caller sent (the plaintext is
// never stored nor compared); the hash found is compared again with
// CRYPTO_memcmp. Every call reads the token's row, so a revocation or
// expiry holds from the next call on, whoever wrote it (the API or `yard
// token revoke` on the server's home).
#pragma once

#include <map>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "store/store.h"

namespace yard {

inline constexpr const char* kScopeRead = "read";
inline constexpr const char* kScopeSubmit = "submit";
inline constexpr const char* kScopeAdmin = "admin";
inline constexpr const char* kScopeMetrics = "metrics";

bool IsScope(const std::string& scope);
// Whether a token of scope `have` may call a route that needs `need`.
bool ScopeAllows(const std::string& have, const std::string& need);
// The 403 for a token whose scope is too small: names the scope needed.
Status ScopeTooSmall(const std::string& have, const std::string& need);

// "30d", "12h", "45m" (a whole positive number and a unit) as seconds.
StatusOr<double> ParseTokenLifetime(const std::string& text);

// Whether `t` may be used at `now`: Unauthenticated with what happened and
// how to get a new token when it was revoked or has expired.
Status CheckTokenRecord(const TokenRecord& t, double now);

// "active", "expired" or "revoked" at `now`.
std::string TokenState(const TokenRecord& t, double now);
// A token as shown by `yard token list --json` and GET /v1/tokens: id,
// user, scope, state, created_at, expires_at, last_used, revoked_at (times
// in Unix seconds, null when not set). Never the hash.
nlohmann::json TokenJson(const TokenRecord& t, double now);

// Constant-time equality of two hashes (CRYPTO_memcmp); false when their
// lengths differ.
bool HashesEqual(const std::string& a, const std::string& b);

// Counts unknown tokens per client address in a fixed window. Thread-safe.
class BadTokenLimiter {
 public:
  // After `max_failures` unknown tokens from one address within
  // `window_s`, that address is refused until the window ends.
  BadTokenLimiter(const Clock* clock, int max_failures, double window_s);

  // 0 when `address` may present a token now, else whole seconds to wait.
  int RetryAfter(const std::string& address);
  void RecordFailure(const std::string& address);

 private:
  struct Window {
    double start = 0;
    int failures = 0;
  };
  void DropStaleLocked(double now) REQUIRES(mu_);

  const Clock* const clock_;
  const int max_failures_;
  const double window_s_;
  Mutex mu_;
  std::map<std::string, Window> windows_ GUARDED_BY(mu_);
};

// Unknown tokens one address may present per minute before it is slowed.
inline constexpr int kBadTokensPerMinute = 20;
// Last-use times are written at most this often per token.
inline constexpr double kLastUseWriteSeconds = 60;

// The server's side of tokens. Thread-safe.
class TokenAuth {
 public:
  TokenAuth(Store* store, const Clock* clock);

  // The caller behind a user or metrics token sent from `address`.
  // ResourceExhausted (429) while the address is slowed (RetryAfter says
  // how long); Unauthenticated for an unknown (counted against the
  // address), revoked or expired token.
  StatusOr<TokenInfo> Identify(const std::string& plaintext, const std::string& address);
  // Whether the token behind `who` still holds (an open stream, a page
  // session): Unauthenticated when revoked or expired since. OK for agents.
  Status StillValid(const TokenInfo& who);
  int RetryAfter(const std::string& address) { return limiter_.RetryAfter(address); }

 private:
  StatusOr<TokenRecord> Find(const std::string& hash);
  void NoteUse(const std::string& hash, double now);

  Store* const store_;
  const Clock* const clock_;
  BadTokenLimiter limiter_;
  Mutex mu_;
  std::map<std::string, double> last_written_ GUARDED_BY(mu_);  // hash -> last use written
};

}  // namespace yard
