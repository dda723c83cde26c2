// HttpClient against a TLS server with a self-signed certificate: pinned
// right, pinned wrong, not pinned, and spoken to in plain HTTP.
#include "client/tls_trust.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <stdlib.h>

#include <thread>

#include "client/http_client.h"
#include "client/tls_server_testing.h"
#include "common/files.h"
#include "common/temp_dir_testing.h"
#include "common/tls.h"

namespace yard {
namespace {

using test_support::TlsServer;

constexpr char kOther[] =
    "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:"
    "89";

TEST(TlsTrustTest, PinnedFingerprintIsAccepted) {
  test_support::TempDir dir;
  TlsServer server(dir);
  HttpClient client(server.url(), "t");
  client.set_tls_trust({server.fingerprint(), "test"});
  StatusOr<Json> r = client.Get("/v1/health");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)["ok"], true);
}

TEST(TlsTrustTest, AConnectionTheServerClosedWhileIdleIsNotReused) {
  test_support::TempDir dir;
  TlsServer server(dir);
  HttpClient client(server.url(), "t");
  client.set_tls_trust({server.fingerprint(), "test"});
  ASSERT_TRUE(client.Get("/v1/health").ok());
  // Past the server's keep-alive (1 s here): it has closed the pooled
  // connection, which cpp-httplib would still take for alive.
  std::this_thread::sleep_for(std::chrono::milliseconds(2200));
  StatusOr<Json> r = client.Get("/v1/health");
  EXPECT_TRUE(r.ok()) << r.status().ToString();
}

TEST(TlsTrustTest, WrongFingerprintIsRefusedNamingBoth) {
  test_support::TempDir dir;
  TlsServer server(dir);
  HttpClient client(server.url(), "t");
  client.set_tls_trust({kOther, "YARD_SERVER_FINGERPRINT"});
  StatusOr<Json> r = client.Get("/v1/health");
  ASSERT_EQ(r.status().code(), Code::kFailedPrecondition) << r.status().ToString();
  const std::string& m = r.status().message();
  EXPECT_NE(m.find(server.fingerprint()), std::string::npos) << m;
  EXPECT_NE(m.find(std::string("not the pinned ") + kOther), std::string::npos) << m;
  EXPECT_NE(m.find("YARD_SERVER_FINGERPRINT"), std::string::npos) << m;
}

TEST(TlsTrustTest, UnpinnedSelfSignedIsRefusedSayingHowToPin) {
  test_support::TempDir dir;
  TlsServer server(dir);
  HttpClient client(server.url(), "t");  // the system's CAs: none signed it
  StatusOr<Json> r = client.Get("/v1/health");
  ASSERT_EQ(r.status().code(), Code::kFailedPrecondition) << r.status().ToString();
  const std::string& m = r.status().message();
  EXPECT_NE(m.find("export YARD_SERVER_FINGERPRINT=" + server.fingerprint()), std::string::npos)
      << m;
  EXPECT_NE(m.find("CAs do not vouch"), std::string::npos) << m;
}

TEST(TlsTrustTest, StreamsArePinnedToo) {
  test_support::TempDir dir;
  TlsServer server(dir);
  HttpClient client(server.url(), "t");
  client.set_tls_trust({kOther, "test"});
  Status s = client.Stream("/v1/health", "", [](const SseEvent&) { return true; });
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("not the pinned"), std::string::npos) << s.message();
}

TEST(TlsTrustTest, PlainHttpToATlsPortSaysUseHttps) {
  test_support::TempDir dir;
  TlsServer server(dir);
  HttpClient client(server.url("http"), "t");
  StatusOr<Json> r = client.Get("/v1/health");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("speaks TLS"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("use " + server.url()), std::string::npos)
      << r.status().message();
}

TEST(TlsTrustTest, PlainHttpServerDownIsNoTlsMatter) {
  // A port nobody listens on: the usual "is the server running?" message.
  HttpClient client("http://127.0.0.1:9", "t");
  StatusOr<Json> r = client.Get("/v1/health");
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_EQ(r.status().message().find("TLS"), std::string::npos) << r.status().message();
}

class TrustForTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("XDG_CONFIG_HOME", dir_.path().c_str(), 1);
    ::unsetenv("YARD_SERVER_FINGERPRINT");
  }
  void TearDown() override {
    ::unsetenv("XDG_CONFIG_HOME");
    ::unsetenv("YARD_SERVER_FINGERPRINT");
  }
  test_support::TempDir dir_;
};

TEST_F(TrustForTest, EnvironmentThenRememberedThenCAs) {
  EXPECT_EQ(TrustFor("https://h:1")->fingerprint, "") << "nothing pinned: the system's CAs";
  ASSERT_TRUE(RememberFingerprint("https://h:1/", kOther).ok());
  EXPECT_EQ(KnownServersPath(), dir_.path() + "/trainyard/known_servers.json");
  EXPECT_EQ(TrustFor("https://h:1")->fingerprint, kOther) << "remembered per server";
  EXPECT_EQ(TrustFor("https://h:2")->fingerprint, "") << "another server is another entry";
  std::string lower = "sha256:" + std::string(64, 'e');
  ::setenv("YARD_SERVER_FINGERPRINT", lower.c_str(), 1);
  StatusOr<TlsTrust> t = TrustFor("https://h:1");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->fingerprint.substr(0, 6), "EE:EE:") << "the environment wins, normalized";
  EXPECT_EQ(t->source, "YARD_SERVER_FINGERPRINT");
  ::setenv("YARD_SERVER_FINGERPRINT", "nonsense", 1);
  EXPECT_EQ(TrustFor("https://h:1").status().code(), Code::kInvalidArgument);
}

TEST_F(TrustForTest, TrustOnFirstUseAsksNothingWhenNotATerminal) {
  test_support::TempDir certs;
  TlsServer server(certs);
  // The test's stdin is not a terminal: no question, trust unchanged; the
  // call itself then says how to pin.
  StatusOr<TlsTrust> t = TrustOnFirstUse(server.url(), {});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->fingerprint, "");
  EXPECT_EQ(RememberedFingerprint(server.url()), "");
}

}  // namespace
}  // namespace yard
