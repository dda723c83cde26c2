#include "common/tls.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "common/command_runner.h"
#include "common/files.h"
#include "common/temp_dir_testing.h"

namespace yard {
namespace {

// What `openssl x509 -noout -fingerprint -sha256` says of `cert`: the
// reference our own computation must agree with.
std::string OpensslFingerprint(const std::string& cert) {
  CommandSpec spec;
  spec.argv = {"openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", cert};
  auto r = ProcessCommandRunner().Run(spec);
  EXPECT_TRUE(r.ok() && r->ok()) << (r.ok() ? r->err : r.status().ToString());
  std::string out = r.ok() ? r->out : "";
  size_t eq = out.find('=');
  out = eq == std::string::npos ? "" : out.substr(eq + 1);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

TEST(TlsTest, SelfSignedCertificateFingerprintMatchesOpenssl) {
  test_support::TempDir dir;
  TlsFiles files{dir.path() + "/c.pem", dir.path() + "/k.pem"};
  ASSERT_TRUE(WriteSelfSignedCertificate(files, {"10.0.0.5", "yard.example"}).ok());
  StatusOr<std::string> fp = PemFingerprint(*ReadFile(files.cert));
  ASSERT_TRUE(fp.ok()) << fp.status().ToString();
  EXPECT_EQ(fp->size(), 95u);  // 32 pairs, 31 colons
  EXPECT_EQ(*fp, OpensslFingerprint(files.cert));
  struct stat st;
  ASSERT_EQ(::stat(files.key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the private key is the server's own";
}

TEST(TlsTest, CertificateNamesTheHostsGiven) {
  test_support::TempDir dir;
  TlsFiles files{dir.path() + "/c.pem", dir.path() + "/k.pem"};
  ASSERT_TRUE(WriteSelfSignedCertificate(files, {"0.0.0.0", "10.0.0.5", "yard.example"}).ok());
  CommandSpec spec;
  spec.argv = {"openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", files.cert};
  auto r = ProcessCommandRunner().Run(spec);
  ASSERT_TRUE(r.ok() && r->ok());
  EXPECT_NE(r->out.find("IP Address:10.0.0.5"), std::string::npos) << r->out;
  EXPECT_NE(r->out.find("DNS:yard.example"), std::string::npos) << r->out;
  EXPECT_EQ(r->out.find("0.0.0.0"), std::string::npos)
      << "a wildcard address names no host: " << r->out;
}

TEST(TlsTest, SelfSignedCertificateIsMadeOnceAndReused) {
  test_support::TempDir dir;
  StatusOr<TlsFiles> first = EnsureSelfSignedCertificate(dir.path() + "/tls", {"127.0.0.1"});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  std::string fp = *PemFingerprint(*ReadFile(first->cert));
  StatusOr<TlsFiles> again = EnsureSelfSignedCertificate(dir.path() + "/tls", {"127.0.0.1"});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*PemFingerprint(*ReadFile(again->cert)), fp) << "a restart keeps what clients pinned";
}

TEST(TlsTest, TwoCertificatesHaveDifferentFingerprints) {
  test_support::TempDir dir;
  TlsFiles a{dir.path() + "/a.pem", dir.path() + "/ak.pem"},
      b{dir.path() + "/b.pem", dir.path() + "/bk.pem"};
  ASSERT_TRUE(WriteSelfSignedCertificate(a, {"localhost"}).ok());
  ASSERT_TRUE(WriteSelfSignedCertificate(b, {"localhost"}).ok());
  EXPECT_NE(*PemFingerprint(*ReadFile(a.cert)), *PemFingerprint(*ReadFile(b.cert)));
}

TEST(TlsTest, PemFingerprintRefusesWhatIsNotACertificate) {
  StatusOr<std::string> fp = PemFingerprint("hello");
  EXPECT_EQ(fp.status().code(), Code::kInvalidArgument);
  EXPECT_NE(fp.status().message().find("BEGIN CERTIFICATE"), std::string::npos);
}

TEST(TlsTest, NormalizeFingerprintAcceptsTheUsualSpellings) {
  const std::string canonical =
      "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:"
      "67:89";
  std::string bare = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";
  for (const std::string& in :
       {canonical, bare, "sha256:" + bare, "SHA256 Fingerprint=" + canonical, "sha256//" + bare,
        std::string("ab cd ef 01 23 45 67 89 ab cd ef 01 23 45 67 89 "
                    "ab cd ef 01 23 45 67 89 ab cd ef 01 23 45 67 89")}) {
    StatusOr<std::string> fp = NormalizeFingerprint(in);
    ASSERT_TRUE(fp.ok()) << in << ": " << fp.status().ToString();
    EXPECT_EQ(*fp, canonical) << in;
  }
}

TEST(TlsTest, NormalizeFingerprintRefusesOtherShapes) {
  for (const char* bad : {"", "AB:CD",
                          "zz"
                          "cdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
                          "abcdef0123456789abcdef0123456789abcdef0123456789abcdef012345678900"}) {
    StatusOr<std::string> fp = NormalizeFingerprint(bad);
    EXPECT_EQ(fp.status().code(), Code::kInvalidArgument) << bad;
    EXPECT_NE(fp.status().message().find("64 hex digits"), std::string::npos)
        << fp.status().message();
  }
}

TEST(TlsTest, LoopbackHosts) {
  for (const char* h : {"127.0.0.1", "127.1.2.3", "localhost", "::1"})
    EXPECT_TRUE(IsLoopbackHost(h)) << h;
  for (const char* h : {"0.0.0.0", "::", "10.0.0.1", "192.168.1.2", "yard.example", ""})
    EXPECT_FALSE(IsLoopbackHost(h)) << h;
}

}  // namespace
}  // namespace yard
