// SigV4 against AWS's published test suite (testdata/sigv4/README.md) and the
// documented IAM ListUsers example: canonical request, string to sign,
// signing key, Authorization header, and SignRequest's added headers.
#include "aws/sigv4.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "common/command_runner.h"
#include "common/hashing.h"

namespace yard::aws {
namespace {

constexpr double kSuiteTime = 1440938160;  // 2015-08-30T12:36:00Z

Credentials Creds(const std::string& id, const std::string& secret, const std::string& token = "") {
  Credentials c;
  c.access_key_id = id;
  c.secret_access_key = secret;
  c.session_token = token;
  return c;
}

// Parses a .req file: "METHOD URI HTTP/1.1", "Name:value" lines, blank, body.
HttpRequestToSign ParseReq(const std::string& text) {
  HttpRequestToSign r;
  std::istringstream in(text);
  std::string line, version;
  std::getline(in, line);
  size_t first = line.find(' ');
  size_t last = line.rfind(' ');
  r.method = line.substr(0, first);
  std::string uri = line.substr(first + 1, last - first - 1);
  size_t q = uri.find('?');
  r.path = uri.substr(0, q);
  if (q != std::string::npos) r.query = uri.substr(q + 1);
  while (std::getline(in, line) && !line.empty()) {
    size_t colon = line.find(':');
    r.headers.emplace_back(line.substr(0, colon), line.substr(colon + 1));
  }
  std::ostringstream body;
  body << in.rdbuf();
  r.body = body.str();
  return r;
}

nlohmann::json Suite() {
  std::ifstream in(std::string(YARD_SOURCE_DIR) +
                   "/src/aws/testdata/sigv4/aws_sig_v4_test_suite.json");
  return nlohmann::json::parse(in);
}

TEST(SigV4, AwsTestSuite) {
  nlohmann::json suite = Suite();
  ASSERT_EQ(suite["tests"].size(), 18u);
  Credentials creds = Creds(suite["access_key_id"], suite["secret_access_key"]);
  SigningScope scope{suite["region"], suite["service"]};
  for (const auto& t : suite["tests"]) {
    SCOPED_TRACE(t["name"].get<std::string>());
    HttpRequestToSign req = ParseReq(t["req"]);
    std::string creq = CanonicalRequest(req);
    EXPECT_EQ(creq, t["creq"].get<std::string>());
    EXPECT_EQ(StringToSign("20150830T123600Z", scope, creq), t["sts"].get<std::string>());
    EXPECT_EQ(AuthorizationHeader(creds, "20150830T123600Z", scope, req),
              t["authz"].get<std::string>());
  }
}

TEST(SigV4, SignRequestAddsDateTokenAndAuthorization) {
  // post-sts-header-before: the same request signed by SignRequest from a
  // request that has only its Host, with a session token in the credentials.
  nlohmann::json suite = Suite();
  nlohmann::json sts_case;
  for (const auto& t : suite["tests"])
    if (t["name"] == "post-sts-header-before") sts_case = t;
  HttpRequestToSign expected = ParseReq(sts_case["req"]);
  std::string token = expected.headers.back().second;
  Credentials creds = Creds(suite["access_key_id"], suite["secret_access_key"], token);
  HttpRequestToSign req{"POST", "/", "", {{"Host", "example.amazonaws.com"}}, ""};
  SignRequest(req, creds, {"us-east-1", "service"}, kSuiteTime);
  ASSERT_EQ(req.headers.size(), 4u);
  EXPECT_EQ(req.headers[1],
            (std::pair<std::string, std::string>{"X-Amz-Date", "20150830T123600Z"}));
  EXPECT_EQ(req.headers[2], (std::pair<std::string, std::string>{"X-Amz-Security-Token", token}));
  EXPECT_EQ(req.headers[3].first, "Authorization");
  EXPECT_EQ(req.headers[3].second, sts_case["authz"].get<std::string>());
}

TEST(SigV4, ContentSha256HeaderIsSignedWhenAsked) {
  HttpRequestToSign req{"PUT", "/key", "", {{"Host", "bucket.s3.amazonaws.com"}}, "data"};
  SignRequest(req, Creds("AKID", "secret"), {"us-east-1", "s3"}, kSuiteTime, true);
  EXPECT_EQ(req.headers[2].first, "X-Amz-Content-Sha256");
  EXPECT_EQ(req.headers[2].second, Sha256Hex("data"));
  EXPECT_NE(req.headers[3].second.find("SignedHeaders=host;x-amz-content-sha256;x-amz-date,"),
            std::string::npos);
}

TEST(SigV4, DocumentedIamListUsersExample) {
  HttpRequestToSign req{"GET",
                        "/",
                        "Action=ListUsers&Version=2010-05-08",
                        {{"Host", "iam.amazonaws.com"},
                         {"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"},
                         {"X-Amz-Date", "20150830T123600Z"}},
                        ""};
  SigningScope scope{"us-east-1", "iam"};
  std::string creq = CanonicalRequest(req);
  EXPECT_EQ(Sha256Hex(creq), "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59");
  std::string key = SigningKey("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", scope);
  std::string key_hex;
  for (unsigned char c : key) {
    static const char* d = "0123456789abcdef";
    key_hex += d[c >> 4];
    key_hex += d[c & 15];
  }
  EXPECT_EQ(key_hex, "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
  EXPECT_EQ(Signature(key, StringToSign("20150830T123600Z", scope, creq)),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
}

// The same EC2 request signed by botocore (the AWS SDK for Python), from
// .venv where moto brought it.
TEST(SigV4, SameAuthorizationAsBotocore) {
  std::string python = std::string(YARD_SOURCE_DIR) + "/.venv/bin/python";
  if (access(python.c_str(), X_OK) != 0) GTEST_SKIP() << "no .venv: run scripts/setup.sh";
  std::string body =
      "Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=tag%3Atrainyard%3Aserver"
      "&Filter.1.Value.1=a%20b%2Bc";
  for (std::string token : {"", "session/token+=="}) {
    HttpRequestToSign req{"POST",
                          "/",
                          "",
                          {{"Host", "ec2.eu-west-1.amazonaws.com"},
                           {"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}},
                          body};
    Credentials creds = Creds("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token);
    SignRequest(req, creds, {"eu-west-1", "ec2"}, kSuiteTime);
    CommandSpec spec;
    spec.argv = {python,
                 std::string(YARD_SOURCE_DIR) + "/src/aws/testdata/sigv4/botocore_sign.py",
                 "https://ec2.eu-west-1.amazonaws.com/",
                 "eu-west-1",
                 "ec2",
                 "20150830T123600Z",
                 creds.access_key_id,
                 creds.secret_access_key,
                 token,
                 body};
    auto r = ProcessCommandRunner().Run(spec);
    ASSERT_TRUE(r.ok() && r->ok()) << (r.ok() ? r->err : r.status().ToString());
    EXPECT_EQ(req.headers.back().second + "\n", r->out) << "token: " << token;
  }
}

TEST(SigV4, UriEncodeAndAmzDate) {
  EXPECT_EQ(UriEncode("a b/c+d=e~"), "a%20b%2Fc%2Bd%3De~");
  EXPECT_EQ(UriEncode("a b/c", true), "a%20b/c");
  EXPECT_EQ(AmzDate(kSuiteTime), "20150830T123600Z");
}

}  // namespace
}  // namespace yard::aws
