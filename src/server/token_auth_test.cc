#include "server/token_auth.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

#include "common/hashing.h"
#include "common/temp_dir_testing.h"
#include "server/stream_limits.h"

namespace yard {
namespace {

namespace fs = std::filesystem;

TEST(ScopeTest, ReadSubmitAdminIsALadderAndMetricsStandsApart) {
  EXPECT_TRUE(ScopeAllows("read", "read"));
  EXPECT_FALSE(ScopeAllows("read", "submit"));
  EXPECT_FALSE(ScopeAllows("read", "admin"));
  EXPECT_TRUE(ScopeAllows("submit", "read"));
  EXPECT_FALSE(ScopeAllows("submit", "admin"));
  EXPECT_TRUE(ScopeAllows("admin", "read"));
  EXPECT_TRUE(ScopeAllows("admin", "submit"));
  EXPECT_TRUE(ScopeAllows("admin", "admin"));
  EXPECT_TRUE(ScopeAllows("metrics", "metrics"));
  EXPECT_FALSE(ScopeAllows("metrics", "read"));
  EXPECT_FALSE(ScopeAllows("admin", "metrics")) << "figures of all users are for scrapers only";
  EXPECT_FALSE(ScopeAllows("", "read"));
  EXPECT_FALSE(ScopeAllows("bogus", "read"));
  EXPECT_FALSE(IsScope("user"));
}

TEST(ScopeTest, TooSmallIsA403NamingTheScopeNeeded) {
  Status s = ScopeTooSmall("read", "submit");
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_NE(s.message().find("scope 'submit'"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("'read'"), std::string::npos) << s.message();
  EXPECT_NE(ScopeTooSmall("metrics", "read").message().find("GET /metrics only"),
            std::string::npos);
}

TEST(TokenLifetimeTest, DaysHoursMinutes) {
  EXPECT_EQ(*ParseTokenLifetime("30d"), 30 * 86400.0);
  EXPECT_EQ(*ParseTokenLifetime("12h"), 12 * 3600.0);
  EXPECT_EQ(*ParseTokenLifetime("45m"), 45 * 60.0);
  for (const char* bad : {"", "d", "30", "30s", "-1d", "0d", "1.5h", "h1", "30dd", "99999999999d"})
    EXPECT_EQ(ParseTokenLifetime(bad).status().code(), Code::kInvalidArgument) << bad;
  EXPECT_NE(ParseTokenLifetime("30s").status().message().find("30d, 12h or 45m"),
            std::string::npos);
}

TEST(HashesEqualTest, ComparesWholeHashesOnly) {
  std::string a = Sha256Hex("yut_a");
  std::string b = a;
  EXPECT_TRUE(HashesEqual(a, b));
  b.back() = b.back() == '0' ? '1' : '0';
  EXPECT_FALSE(HashesEqual(a, b));
  EXPECT_FALSE(HashesEqual(a, a.substr(0, 63)));
  EXPECT_FALSE(HashesEqual(a, ""));
}

TEST(BadTokenLimiterTest, SlowsOneAddressForTheRestOfItsWindow) {
  FakeClock clock;
  BadTokenLimiter limiter(&clock, 3, 60);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(limiter.RetryAfter("10.0.0.1"), 0);
    limiter.RecordFailure("10.0.0.1");
  }
  clock.AdvanceMonotonic(20);
  EXPECT_EQ(limiter.RetryAfter("10.0.0.1"), 41);
  EXPECT_EQ(limiter.RetryAfter("10.0.0.2"), 0) << "another address is not slowed";
  clock.AdvanceMonotonic(41);
  EXPECT_EQ(limiter.RetryAfter("10.0.0.1"), 0) << "the window ended";
  limiter.RecordFailure("10.0.0.1");
  EXPECT_EQ(limiter.RetryAfter("10.0.0.1"), 0) << "a new window counts from zero";
}

class TokenAuthTest : public testing::Test {
 protected:
  void SetUp() override {
    StatusOr<std::unique_ptr<Store>> store = Store::Open((dir_ / "state.db").string());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    auth_ = std::make_unique<TokenAuth>(store_.get(), &clock_);
  }
  void TearDown() override {
    auth_.reset();
    store_.reset();
  }
  std::string Create(const std::string& scope, double expires_at = 0) {
    StatusOr<std::string> t = store_->CreateToken("ann", scope, expires_at);
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return t.ok() ? *t : "";
  }
  TokenRecord Record(const std::string& token) { return store_->FindToken(token).value(); }

  FakeClock clock_{RealClock().Now()};
  test_support::TempDir tmp_;
  fs::path dir_ = tmp_.path();
  std::unique_ptr<Store> store_;
  std::unique_ptr<TokenAuth> auth_;
};

TEST_F(TokenAuthTest, IdentifiesByHashWithScope) {
  std::string token = Create("submit");
  StatusOr<TokenInfo> who = auth_->Identify(token, "a");
  ASSERT_TRUE(who.ok()) << who.status().ToString();
  EXPECT_EQ(who->user, "ann");
  EXPECT_EQ(who->kind, "user");
  EXPECT_EQ(who->scope, "submit");
  EXPECT_EQ(who->token_hash, Sha256Hex(token));
  EXPECT_EQ(Record(token).id, Sha256Hex(token).substr(0, 12));
  std::string wrong = token;
  wrong.back() = wrong.back() == 'a' ? 'b' : 'a';
  EXPECT_EQ(auth_->Identify(wrong, "a").status().code(), Code::kUnauthenticated);
}

TEST_F(TokenAuthTest, ARevokedTokenIsRefusedAtOnceAndItsStreamsToo) {
  std::string token = Create("admin");
  TokenInfo who = auth_->Identify(token, "a").value();
  ASSERT_TRUE(auth_->StillValid(who).ok());
  StatusOr<TokenRecord> revoked = store_->RevokeToken(Record(token).id, "", clock_.Now());
  ASSERT_TRUE(revoked.ok()) << revoked.status().ToString();
  Status s = auth_->Identify(token, "a").status();
  EXPECT_EQ(s.code(), Code::kUnauthenticated);
  EXPECT_NE(s.message().find("was revoked"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("yard token create"), std::string::npos) << s.message();
  EXPECT_EQ(auth_->StillValid(who).code(), Code::kUnauthenticated) << "an open stream checks again";
  EXPECT_EQ(auth_->RetryAfter("a"), 0)
      << "a revoked token is no guess: not counted against the address";
}

TEST_F(TokenAuthTest, RevokeIsLimitedToTheUserWhenOneIsGiven) {
  std::string token = Create("read");
  EXPECT_EQ(store_->RevokeToken(Record(token).id, "bob", clock_.Now()).status().code(),
            Code::kNotFound);
  EXPECT_TRUE(auth_->Identify(token, "a").ok());
  EXPECT_TRUE(store_->RevokeToken(Record(token).id, "ann", clock_.Now()).ok());
  EXPECT_EQ(store_->RevokeToken("000000000000", "", clock_.Now()).status().code(), Code::kNotFound);
}

TEST_F(TokenAuthTest, AnExpiredTokenSaysWhenAndHowToGetANewOne) {
  std::string token = Create("read", clock_.Now() + 3600);
  TokenInfo who = auth_->Identify(token, "a").value();
  clock_.Advance(3599);
  EXPECT_TRUE(auth_->Identify(token, "a").ok());
  clock_.Advance(1);
  Status s = auth_->Identify(token, "a").status();
  EXPECT_EQ(s.code(), Code::kUnauthenticated);
  EXPECT_NE(s.message().find("expired at"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("--expires"), std::string::npos) << s.message();
  EXPECT_FALSE(auth_->StillValid(who).ok());
  EXPECT_EQ(TokenState(Record(token), clock_.Now()), "expired");
}

TEST_F(TokenAuthTest, LastUseIsWrittenAtMostOnceAMinute) {
  std::string token = Create("read");
  EXPECT_EQ(Record(token).last_used, 0);
  double first = clock_.Now();
  ASSERT_TRUE(auth_->Identify(token, "a").ok());
  EXPECT_EQ(Record(token).last_used, first);
  clock_.Advance(59);
  ASSERT_TRUE(auth_->Identify(token, "a").ok());
  EXPECT_EQ(Record(token).last_used, first) << "no write within the minute";
  clock_.Advance(1);
  ASSERT_TRUE(auth_->Identify(token, "a").ok());
  EXPECT_EQ(Record(token).last_used, first + 60);
}

TEST_F(TokenAuthTest, UnknownTokensFromOneAddressAreSlowedWithoutBlockingOthers) {
  std::string good = Create("read");
  for (int i = 0; i < kBadTokensPerMinute; ++i)
    EXPECT_EQ(auth_->Identify("yut_guess" + std::to_string(i), "10.1.1.1").status().code(),
              Code::kUnauthenticated);
  Status s = auth_->Identify(good, "10.1.1.1").status();
  EXPECT_EQ(s.code(), Code::kTooManyRequests) << "even a right guess is not looked at now";
  EXPECT_NE(s.message().find("try again in"), std::string::npos) << s.message();
  EXPECT_GT(auth_->RetryAfter("10.1.1.1"), 0);
  EXPECT_TRUE(auth_->Identify(good, "10.1.1.2").ok()) << "another address goes on";
  clock_.AdvanceMonotonic(60);
  EXPECT_TRUE(auth_->Identify(good, "10.1.1.1").ok()) << "after the window";
}

TEST_F(TokenAuthTest, MetricsTokensKeepTheirKind) {
  std::string token = Create("metrics");
  TokenInfo who = auth_->Identify(token, "a").value();
  EXPECT_EQ(who.kind, "metrics");
  EXPECT_EQ(who.scope, "metrics");
  EXPECT_EQ(store_->CreateToken("ann", "user").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(store_->CreateToken("ann", "agent").status().code(), Code::kInvalidArgument);
}

TEST(StreamLimitsTest, RequestsInFlightAreLimitedPerUserAndNamed) {
  StreamLimits limits(2, "requests in flight", "let some finish");
  StatusOr<StreamLimits::Lease> a = limits.Open("ann");
  StatusOr<StreamLimits::Lease> b = limits.Open("ann");
  ASSERT_TRUE(a.ok() && b.ok());
  Status over = limits.Open("ann").status();
  EXPECT_EQ(over.code(), Code::kTooManyRequests);
  EXPECT_NE(over.message().find("2 requests in flight, the limit per user (2)"), std::string::npos)
      << over.message();
  EXPECT_TRUE(limits.Open("bob").ok()) << "another user is not held back";
  a->reset();  // gives ann's first lease back
  EXPECT_TRUE(limits.Open("ann").ok());
}

}  // namespace
}  // namespace yard
