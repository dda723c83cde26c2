// AWS Signature Version 4 (header form) over OpenSSL's SHA-256 and HMAC.
//
// The steps are separate functions so that tests can check each against
// AWS's published test suite (src/aws/testdata/sigv4/README.md):
// CanonicalRequest -> StringToSign -> SigningKey -> Signature -> the
// Authorization header. SignRequest does all of it for a request about to
// be sent. Pure functions; thread-safe.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "aws/credentials.h"

namespace yard::aws {

struct HttpRequestToSign {
  std::string method;  // "POST"
  std::string path;    // raw (not percent-encoded) path, "/" for the Query APIs
  std::string query;   // raw query string without '?', "" for none
  // Header names as sent (any case); must include Host. Every header listed
  // here is signed. Repeated names are not supported.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct SigningScope {
  std::string region;   // "us-east-1"
  std::string service;  // "ec2"
};

// Percent-encodes everything but A-Z a-z 0-9 - _ . ~ (and '/' when
// `keep_slash`), upper-case hex, as SigV4 requires.
std::string UriEncode(const std::string& s, bool keep_slash = false);
// "20150830T123600Z" for Unix seconds `t`.
std::string AmzDate(double t);

// The canonical request: method, normalized encoded path, sorted encoded
// query, lower-case sorted headers with trimmed values, signed header list,
// hex SHA-256 of the body.
std::string CanonicalRequest(const HttpRequestToSign& request);
// "host;x-amz-date" etc.: the lower-case sorted names of request.headers.
std::string SignedHeaders(const HttpRequestToSign& request);
std::string StringToSign(const std::string& amz_date, const SigningScope& scope,
                         const std::string& canonical_request);
// The derived key HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request"), raw
// bytes.
std::string SigningKey(const std::string& secret, const std::string& date,
                       const SigningScope& scope);
// Hex HMAC-SHA256 of the string to sign under the signing key.
std::string Signature(const std::string& signing_key, const std::string& string_to_sign);
// "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws4_request,
// SignedHeaders=..., Signature=..."
std::string AuthorizationHeader(const Credentials& credentials, const std::string& amz_date,
                                const SigningScope& scope, const HttpRequestToSign& request);

// Signs `request` in place for time `now` (Unix seconds): adds X-Amz-Date,
// X-Amz-Security-Token (when the credentials carry a session token),
// X-Amz-Content-Sha256 (when `content_sha256_header`, as S3 needs; EC2 does
// not), then Authorization. REQUIRES: a Host header; no Authorization yet.
void SignRequest(HttpRequestToSign& request, const Credentials& credentials,
                 const SigningScope& scope, double now, bool content_sha256_header = false);

}  // namespace yard::aws
