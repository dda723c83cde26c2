#include "server/token_auth.h"

#include <openssl/crypto.h>

#include <charconv>
#include <ctime>

#include "common/hashing.h"

namespace yard {
namespace {

// Rank on the read < submit < admin ladder; 0 for metrics (apart).
int Rank(const std::string& scope) {
  if (scope == kScopeRead) return 1;
  if (scope == kScopeSubmit) return 2;
  if (scope == kScopeAdmin) return 3;
  return 0;
}

std::string UtcTime(double t) {
  std::time_t s = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
  return buf;
}

const char* const kNewTokenAdvice =
    "ask the server's operator for a new one (`yard token create USER [--scope S] [--expires 30d]` "
    "on the server's home) and set YARD_TOKEN";

}  // namespace

bool IsScope(const std::string& scope) { return Rank(scope) > 0 || scope == kScopeMetrics; }

bool ScopeAllows(const std::string& have, const std::string& need) {
  if (need == kScopeMetrics || have == kScopeMetrics) return have == need;
  return Rank(have) >= Rank(need) && Rank(need) > 0;
}

Status ScopeTooSmall(const std::string& have, const std::string& need) {
  if (have == kScopeMetrics)
    return PermissionDenied(
        "a metrics token reads GET /metrics only: this route needs a user token "
        "of scope '" +
        need + "'");
  if (need == kScopeMetrics)
    return PermissionDenied(
        "GET /metrics needs a token of scope 'metrics' "
        "(`yard token create NAME --scope metrics` on the server's home)");
  return PermissionDenied("this route needs a token of scope '" + need +
                          "' or more; this token's scope is '" + have +
                          "' (read < submit < admin): use another token, or ask for one with "
                          "`yard token create USER --scope " +
                          need + "`");
}

StatusOr<double> ParseTokenLifetime(const std::string& text) {
  auto bad = [&] {
    return InvalidArgument(
        "a token's lifetime is a whole number and a unit, like 30d, 12h or 45m; got '" + text +
        "'");
  };
  if (text.size() < 2) return bad();
  long n = 0;
  const char* unit = text.data() + text.size() - 1;
  auto [end, ec] = std::from_chars(text.data(), unit, n);
  if (ec != std::errc() || end != unit || n <= 0 || n > 100L * 365 * 24 * 60) return bad();
  switch (*unit) {
    case 'd':
      return n * 86400.0;
    case 'h':
      return n * 3600.0;
    case 'm':
      return n * 60.0;
    default:
      return bad();
  }
}

Status CheckTokenRecord(const TokenRecord& t, double now) {
  if (t.revoked_at > 0)
    return Unauthenticated("this token (id " + t.id + ") was revoked at " + UtcTime(t.revoked_at) +
                           ": " + kNewTokenAdvice);
  if (t.expires_at > 0 && now >= t.expires_at)
    return Unauthenticated("this token (id " + t.id + ") expired at " + UtcTime(t.expires_at) +
                           ": " + kNewTokenAdvice);
  return Status::Ok();
}

std::string TokenState(const TokenRecord& t, double now) {
  if (t.revoked_at > 0) return "revoked";
  if (t.expires_at > 0 && now >= t.expires_at) return "expired";
  return "active";
}

nlohmann::json TokenJson(const TokenRecord& t, double now) {
  auto when = [](double v) { return v > 0 ? nlohmann::json(v) : nlohmann::json(nullptr); };
  return {{"id", t.id},
          {"user", t.user},
          {"scope", t.scope},
          {"state", TokenState(t, now)},
          {"created_at", t.created_at},
          {"expires_at", when(t.expires_at)},
          {"last_used", when(t.last_used)},
          {"revoked_at", when(t.revoked_at)}};
}

bool HashesEqual(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

BadTokenLimiter::BadTokenLimiter(const Clock* clock, int max_failures, double window_s)
    : clock_(clock), max_failures_(max_failures), window_s_(window_s) {}

int BadTokenLimiter::RetryAfter(const std::string& address) {
  double now = clock_->Monotonic();
  MutexLock lock(mu_);
  auto it = windows_.find(address);
  if (it == windows_.end() || it->second.failures < max_failures_) return 0;
  double left = it->second.start + window_s_ - now;
  if (left <= 0) {
    windows_.erase(it);
    return 0;
  }
  return static_cast<int>(left) + 1;
}

void BadTokenLimiter::RecordFailure(const std::string& address) {
  double now = clock_->Monotonic();
  MutexLock lock(mu_);
  // Many addresses (a scan) must not grow the map without bound.
  if (windows_.size() > 4096) DropStaleLocked(now);
  Window& w = windows_[address];
  if (w.failures == 0 || now - w.start >= window_s_) w = {now, 0};
  ++w.failures;
}

void BadTokenLimiter::DropStaleLocked(double now) {
  std::erase_if(windows_, [&](const auto& kv) { return now - kv.second.start >= window_s_; });
}

TokenAuth::TokenAuth(Store* store, const Clock* clock)
    : store_(store), clock_(clock), limiter_(clock, kBadTokensPerMinute, 60) {}

StatusOr<TokenRecord> TokenAuth::Find(const std::string& hash) {
  StatusOr<TokenRecord> t = store_->FindTokenByHash(hash);
  if (!t.ok()) return t.status();
  // The store found the row by the hash; compare it once more in constant
  // time so that no byte-by-byte comparison of secrets stands anywhere.
  if (!HashesEqual(t->hash, hash)) return Unauthenticated("unknown token");
  if (t->kind != "user" && t->kind != "metrics")  // a shared agent token of an earlier version
    return Unauthenticated(
        "shared agent tokens are no longer accepted: each instance gets its own "
        "credential at launch (docs/api.md, \"Agent credentials\")");
  return t;
}

StatusOr<TokenInfo> TokenAuth::Identify(const std::string& plaintext, const std::string& address) {
  if (int wait = limiter_.RetryAfter(address); wait > 0)
    return Status(Code::kTooManyRequests, "too many unknown tokens from " + address +
                                              " (more than " + std::to_string(kBadTokensPerMinute) +
                                              " a minute): try again in " + std::to_string(wait) +
                                              " s with a valid token");
  std::string hash = Sha256Hex(plaintext);
  StatusOr<TokenRecord> t = Find(hash);
  if (!t.ok()) {
    if (t.status().code() == Code::kUnauthenticated) limiter_.RecordFailure(address);
    return t.status();
  }
  double now = clock_->Now();
  YARD_RETURN_IF_ERROR(CheckTokenRecord(*t, now));
  NoteUse(hash, now);
  return TokenInfo{t->user, t->kind, "", t->scope, hash};
}

Status TokenAuth::StillValid(const TokenInfo& who) {
  if (who.token_hash.empty()) return Status::Ok();
  YARD_ASSIGN_OR_RETURN(TokenRecord t, Find(who.token_hash));
  return CheckTokenRecord(t, clock_->Now());
}

void TokenAuth::NoteUse(const std::string& hash, double now) {
  {
    MutexLock lock(mu_);
    double& written = last_written_[hash];
    if (now - written < kLastUseWriteSeconds) return;
    written = now;
  }
  // Best effort: a failed write only leaves `yard token list` a bit behind.
  (void)store_->RecordTokenUse(hash, now);
}

}  // namespace yard
