// The server's TLS pin an agent keeps in its folder: kept when given, used
// when not, and a server presenting another certificate refused with what to
// do about the kept file.
#include "agent/server_pin.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "agent/agent_http.h"
#include "client/tls_server_testing.h"
#include "common/files.h"
#include "common/temp_dir_testing.h"

namespace yard {
namespace {

using test_support::TempDir;
using test_support::TlsServer;

constexpr char kOther[] =
    "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:"
    "89";

std::string PinPath(const TempDir& dir) { return dir.path() + "/" + kServerPinFile; }

StatusOr<HttpReply> Health(const std::string& url, const TlsTrust& trust) {
  AgentHttp http([url]() -> StatusOr<std::string> { return url; }, "yit_x", trust);
  return http.Get("/v1/health", 5);
}

TEST(ServerPinTest, AGivenFingerprintIsKeptPrivateAndUsedWhenNoneIsGiven) {
  TempDir dir;
  std::string lower =
      "ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:"
      "ab:cd:ef:01:23:45:67:89";
  StatusOr<TlsTrust> given = AgentServerTrust(dir.path(), lower);
  ASSERT_TRUE(given.ok()) << given.status().ToString();
  EXPECT_EQ(given->fingerprint, kOther) << "canonical";
  EXPECT_EQ(*ReadFile(PinPath(dir)), std::string(kOther) + "\n");
  struct stat st {};
  ASSERT_EQ(::stat(PinPath(dir).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // Started again in place, without YARD_SERVER_FINGERPRINT.
  StatusOr<TlsTrust> kept = AgentServerTrust(dir.path(), "");
  ASSERT_TRUE(kept.ok()) << kept.status().ToString();
  EXPECT_EQ(kept->fingerprint, kOther);
  EXPECT_EQ(kept->source, PinPath(dir));
}

TEST(ServerPinTest, NothingGivenNorKeptIsTheSystemsCAsAndWritesNothing) {
  TempDir dir;
  StatusOr<TlsTrust> trust = AgentServerTrust(dir.path(), "");
  ASSERT_TRUE(trust.ok()) << trust.status().ToString();
  EXPECT_EQ(trust->fingerprint, "");
  EXPECT_FALSE(ReadFile(PinPath(dir)).ok()) << "nothing to keep";
}

TEST(ServerPinTest, AGivenFingerprintReplacesTheKeptOne) {
  TempDir dir;
  ASSERT_TRUE(AgentServerTrust(dir.path(), kOther).ok());
  std::string fresh(95, '0');
  for (size_t i = 2; i < fresh.size(); i += 3) fresh[i] = ':';
  StatusOr<TlsTrust> given = AgentServerTrust(dir.path(), fresh);
  ASSERT_TRUE(given.ok()) << given.status().ToString();
  EXPECT_EQ(given->fingerprint, fresh);
  EXPECT_EQ(AgentServerTrust(dir.path(), "")->fingerprint, fresh);
}

TEST(ServerPinTest, AMalformedGivenOrKeptFingerprintIsRefusedSayingWhich) {
  TempDir dir;
  StatusOr<TlsTrust> given = AgentServerTrust(dir.path(), "not-a-fingerprint");
  EXPECT_EQ(given.status().code(), Code::kInvalidArgument);
  EXPECT_NE(given.status().message().find("YARD_SERVER_FINGERPRINT"), std::string::npos)
      << given.status().message();
  EXPECT_FALSE(ReadFile(PinPath(dir)).ok()) << "a malformed one is not kept";
  ASSERT_TRUE(WriteFileAtomic(PinPath(dir), "garbage\n", 0600).ok());
  StatusOr<TlsTrust> kept = AgentServerTrust(dir.path(), "");
  EXPECT_EQ(kept.status().code(), Code::kInvalidArgument);
  const std::string& m = kept.status().message();
  EXPECT_NE(m.find(PinPath(dir)), std::string::npos) << m;
  EXPECT_NE(m.find("Delete it"), std::string::npos) << m;
}

TEST(ServerPinTest, TheKeptPinLetsTheAgentReachItsServer) {
  TempDir dir;
  TlsServer server(dir);
  ASSERT_TRUE(AgentServerTrust(dir.path(), server.fingerprint()).ok());
  StatusOr<TlsTrust> kept = AgentServerTrust(dir.path(), "");
  ASSERT_TRUE(kept.ok()) << kept.status().ToString();
  StatusOr<HttpReply> r = Health(server.url(), *kept);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  // Without it, the server's self-signed certificate is refused.
  EXPECT_EQ(Health(server.url(), TlsTrust{}).status().code(), Code::kFailedPrecondition);
}

TEST(ServerPinTest, AServerNotMatchingTheKeptPinIsRefusedSayingToDeleteTheFile) {
  TempDir dir;
  TlsServer server(dir);  // a new certificate: not the one kept
  ASSERT_TRUE(AgentServerTrust(dir.path(), kOther).ok());
  StatusOr<TlsTrust> kept = AgentServerTrust(dir.path(), "");
  ASSERT_TRUE(kept.ok()) << kept.status().ToString();
  StatusOr<HttpReply> r = Health(server.url(), *kept);
  ASSERT_EQ(r.status().code(), Code::kFailedPrecondition) << r.status().ToString();
  std::string m = WithKeptPinAdvice(r.status(), *kept, dir.path());
  EXPECT_NE(m.find(server.fingerprint() + ", not the pinned " + kOther + " (from " + PinPath(dir)),
            std::string::npos)
      << m;
  EXPECT_NE(m.find(PinPath(dir) + " is the pin this agent kept"), std::string::npos) << m;
  EXPECT_NE(m.find("delete that file or start the agent with YARD_SERVER_FINGERPRINT set"),
            std::string::npos)
      << m;
  // The advice is for the kept pin only: not for a given one, nor for
  // other failures.
  StatusOr<TlsTrust> given = AgentServerTrust(dir.path(), kOther);
  r = Health(server.url(), *given);
  ASSERT_EQ(r.status().code(), Code::kFailedPrecondition) << r.status().ToString();
  EXPECT_EQ(WithKeptPinAdvice(r.status(), *given, dir.path()), r.status().message());
  Status other = Unavailable("POST /v1/agents/register: Connection");
  EXPECT_EQ(WithKeptPinAdvice(other, *kept, dir.path()), other.message());
}

}  // namespace
}  // namespace yard
