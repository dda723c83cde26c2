// Sign-in for the dashboard page: one-time login codes and page sessions.
//
// `yard dashboard` asks for a login code with the user's token (POST
// /v1/dashboard/login-links) and opens /login#code=...: the fragment never
// reaches the server's logs, and the page trades the code at once for a
// session (POST /v1/dashboard/session), kept in an HttpOnly SameSite=Strict
// cookie, then drops the fragment from the address and the history. A code
// works once and for kLoginCodeSeconds. Sessions live in memory only: a
// restarted server asks to sign in again.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <map>
#include <mutex>
#include <string>

#include "common/clock.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "store/store.h"

namespace yard {

inline constexpr double kLoginCodeSeconds = 60;
inline constexpr double kSessionSeconds = 12 * 3600;
inline constexpr const char* kSessionCookie = "yard_session";

class DashboardAuth {
 public:
  explicit DashboardAuth(const Clock* clock) : clock_(clock) {}

  // A fresh one-time code that signs `who` in.
  std::string CreateLoginCode(const TokenInfo& who);
  // Consumes `code` and opens a session for its user. Unauthenticated when
  // the code is unknown, used or expired (the message says to run `yard
  // dashboard` again).
  StatusOr<std::string> RedeemLoginCode(const std::string& code);
  // Opens a session for `who` (signed in with a token on the page).
  std::string OpenSession(const TokenInfo& who);
  // The user of a live session; Unauthenticated otherwise.
  StatusOr<TokenInfo> SessionUser(const std::string& session);
  void CloseSession(const std::string& session);

 private:
  struct Entry {
    TokenInfo who;
    double expires = 0;
  };
  void DropExpired() REQUIRES(mu_);

  const Clock* const clock_;
  Mutex mu_;
  std::map<std::string, Entry> codes_ GUARDED_BY(mu_);
  std::map<std::string, Entry> sessions_ GUARDED_BY(mu_);
};

// The value of cookie `name` in a Cookie header, or "".
std::string CookieValue(const std::string& header, const std::string& name);
// A Set-Cookie value for the session (HttpOnly, SameSite=Strict, Path=/);
// an empty `session` clears the cookie.
std::string SessionCookie(const std::string& session);

}  // namespace yard
