#include "server/dashboard_auth.h"

#include <openssl/rand.h>

namespace yard {
namespace {

std::string RandomToken() {
  unsigned char raw[24];
  RAND_bytes(raw, sizeof(raw));
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

}  // namespace

void DashboardAuth::DropExpired() {
  double now = clock_->Now();
  for (auto* m : {&codes_, &sessions_})
    std::erase_if(*m, [now](const auto& kv) { return kv.second.expires <= now; });
}

std::string DashboardAuth::CreateLoginCode(const TokenInfo& who) {
  std::string code = RandomToken();
  MutexLock lock(mu_);
  DropExpired();
  codes_[code] = {who, clock_->Now() + kLoginCodeSeconds};
  return code;
}

StatusOr<std::string> DashboardAuth::RedeemLoginCode(const std::string& code) {
  TokenInfo who;
  {
    MutexLock lock(mu_);
    DropExpired();
    auto it = codes_.find(code);
    if (it == codes_.end())
      return Unauthenticated("this login link is used or expired (links work once, for " +
                             std::to_string(static_cast<int>(kLoginCodeSeconds)) +
                             " s): run `yard dashboard` again, or sign in with a token");
    who = it->second.who;
    codes_.erase(it);
  }
  return OpenSession(who);
}

std::string DashboardAuth::OpenSession(const TokenInfo& who) {
  std::string session = RandomToken();
  MutexLock lock(mu_);
  DropExpired();
  sessions_[session] = {who, clock_->Now() + kSessionSeconds};
  return session;
}

StatusOr<TokenInfo> DashboardAuth::SessionUser(const std::string& session) {
  MutexLock lock(mu_);
  auto it = sessions_.find(session);
  if (it == sessions_.end() || it->second.expires <= clock_->Now())
    return Unauthenticated(
        "not signed in (or the session expired): run `yard dashboard` or sign in with a token");
  return it->second.who;
}

void DashboardAuth::CloseSession(const std::string& session) {
  MutexLock lock(mu_);
  sessions_.erase(session);
}

std::string CookieValue(const std::string& header, const std::string& name) {
  size_t pos = 0;
  while (pos < header.size()) {
    size_t end = header.find(';', pos);
    if (end == std::string::npos) end = header.size();
    size_t start = header.find_first_not_of(' ', pos);
    size_t eq = header.find('=', start);
    if (start < end && eq < end && header.compare(start, eq - start, name) == 0)
      return header.substr(eq + 1, end - eq - 1);
    pos = end + 1;
  }
  return "";
}

std::string SessionCookie(const std::string& session) {
  std::string c =
      std::string(kSessionCookie) + "=" + session + "; Path=/; HttpOnly; SameSite=Strict";
  if (session.empty()) c += "; Max-Age=0";
  return c;
}

}  // namespace yard
