#include "server/dashboard_auth.h"

#include <gtest/gtest.h>

namespace yard {
namespace {

TEST(DashboardAuthTest, ALoginCodeWorksOnceAndOpensASessionOfItsUser) {
  FakeClock clock(1000);
  DashboardAuth auth(&clock);
  std::string code = auth.CreateLoginCode({"alice", "user", "", "admin", ""});
  StatusOr<std::string> session = auth.RedeemLoginCode(code);
  ASSERT_TRUE(session.ok()) << session.status().message();
  EXPECT_EQ(auth.SessionUser(*session)->user, "alice");
  StatusOr<std::string> again = auth.RedeemLoginCode(code);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), Code::kUnauthenticated);
  EXPECT_NE(again.status().message().find("yard dashboard"), std::string::npos);
}

TEST(DashboardAuthTest, CodesAndSessionsExpire) {
  FakeClock clock(1000);
  DashboardAuth auth(&clock);
  std::string code = auth.CreateLoginCode({"alice", "user", "", "admin", ""});
  std::string session = auth.OpenSession({"bob", "user", "", "admin", ""});
  clock.Advance(kLoginCodeSeconds + 1);
  EXPECT_FALSE(auth.RedeemLoginCode(code).ok());
  EXPECT_TRUE(auth.SessionUser(session).ok());
  clock.Advance(kSessionSeconds);
  EXPECT_FALSE(auth.SessionUser(session).ok());
}

TEST(DashboardAuthTest, ClosedSessionsAndUnknownOnesAreRefused) {
  FakeClock clock(1000);
  DashboardAuth auth(&clock);
  std::string session = auth.OpenSession({"bob", "user", "", "admin", ""});
  auth.CloseSession(session);
  EXPECT_FALSE(auth.SessionUser(session).ok());
  EXPECT_FALSE(auth.SessionUser("").ok());
}

TEST(DashboardAuthTest, CookiesAreReadAndWrittenStrictly) {
  EXPECT_EQ(CookieValue("a=1; yard_session=abc; b=2", "yard_session"), "abc");
  EXPECT_EQ(CookieValue("yard_session=x", "yard_session"), "x");
  EXPECT_EQ(CookieValue("not_yard_session=x", "yard_session"), "");
  EXPECT_EQ(CookieValue("", "yard_session"), "");
  std::string c = SessionCookie("abc");
  EXPECT_NE(c.find("HttpOnly"), std::string::npos);
  EXPECT_NE(c.find("SameSite=Strict"), std::string::npos);
  EXPECT_NE(SessionCookie("").find("Max-Age=0"), std::string::npos);
}

}  // namespace
}  // namespace yard
