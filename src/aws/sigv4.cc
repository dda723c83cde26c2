#include "aws/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cctype>
#include <ctime>

#include "common/hashing.h"

namespace yard::aws {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Trims and collapses runs of spaces to one, as SigV4 asks of header values.
std::string CanonicalHeaderValue(const std::string& v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

std::string PercentDecode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Removes "." and ".." segments and empty segments; keeps a trailing slash.
std::string NormalizedPath(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    std::string seg =
        path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (seg == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!seg.empty() && seg != ".") {
      parts.push_back(seg);
    }
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  std::string out;
  for (const auto& p : parts) out += "/" + p;
  if (out.empty()) return "/";
  if (path.size() > 1 && path.back() == '/') out += '/';
  return out;
}

std::string CanonicalQuery(const std::string& query) {
  std::vector<std::pair<std::string, std::string>> params;
  size_t start = 0;
  while (start < query.size()) {
    size_t amp = query.find('&', start);
    std::string item =
        query.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
    if (!item.empty()) {
      size_t eq = item.find('=');
      std::string key = eq == std::string::npos ? item : item.substr(0, eq);
      std::string value = eq == std::string::npos ? "" : item.substr(eq + 1);
      params.emplace_back(UriEncode(PercentDecode(key)), UriEncode(PercentDecode(value)));
    }
    if (amp == std::string::npos) break;
    start = amp + 1;
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [k, v] : params) out += (out.empty() ? "" : "&") + k + "=" + v;
  return out;
}

std::vector<std::pair<std::string, std::string>> SortedHeaders(const HttpRequestToSign& r) {
  std::vector<std::pair<std::string, std::string>> headers;
  for (const auto& [name, value] : r.headers) {
    headers.emplace_back(Lower(name), CanonicalHeaderValue(value));
  }
  std::sort(headers.begin(), headers.end());
  return headers;
}

std::string Hmac(const std::string& key, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string Hex(const std::string& bytes) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

std::string CredentialScope(const std::string& date, const SigningScope& scope) {
  return date + "/" + scope.region + "/" + scope.service + "/aws4_request";
}

}  // namespace

std::string UriEncode(const std::string& s, bool keep_slash) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
        (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string AmzDate(double t) {
  std::time_t secs = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::string SignedHeaders(const HttpRequestToSign& request) {
  std::string out;
  for (const auto& [name, value] : SortedHeaders(request)) out += (out.empty() ? "" : ";") + name;
  return out;
}

std::string CanonicalRequest(const HttpRequestToSign& request) {
  std::string out = request.method + "\n";
  out += UriEncode(NormalizedPath(request.path), /*keep_slash=*/true) + "\n";
  out += CanonicalQuery(request.query) + "\n";
  for (const auto& [name, value] : SortedHeaders(request)) out += name + ":" + value + "\n";
  out += "\n" + SignedHeaders(request) + "\n";
  out += Sha256Hex(request.body);
  return out;
}

std::string StringToSign(const std::string& amz_date, const SigningScope& scope,
                         const std::string& canonical_request) {
  return "AWS4-HMAC-SHA256\n" + amz_date + "\n" + CredentialScope(amz_date.substr(0, 8), scope) +
         "\n" + Sha256Hex(canonical_request);
}

std::string SigningKey(const std::string& secret, const std::string& date,
                       const SigningScope& scope) {
  std::string k = Hmac("AWS4" + secret, date);
  k = Hmac(k, scope.region);
  k = Hmac(k, scope.service);
  return Hmac(k, "aws4_request");
}

std::string Signature(const std::string& signing_key, const std::string& string_to_sign) {
  return Hex(Hmac(signing_key, string_to_sign));
}

std::string AuthorizationHeader(const Credentials& credentials, const std::string& amz_date,
                                const SigningScope& scope, const HttpRequestToSign& request) {
  std::string date = amz_date.substr(0, 8);
  std::string sts = StringToSign(amz_date, scope, CanonicalRequest(request));
  std::string signature = Signature(SigningKey(credentials.secret_access_key, date, scope), sts);
  return "AWS4-HMAC-SHA256 Credential=" + credentials.access_key_id + "/" +
         CredentialScope(date, scope) + ", SignedHeaders=" + SignedHeaders(request) +
         ", Signature=" + signature;
}

void SignRequest(HttpRequestToSign& request, const Credentials& credentials,
                 const SigningScope& scope, double now, bool content_sha256_header) {
  std::string amz_date = AmzDate(now);
  request.headers.emplace_back("X-Amz-Date", amz_date);
  if (!credentials.session_token.empty()) {
    request.headers.emplace_back("X-Amz-Security-Token", credentials.session_token);
  }
  if (content_sha256_header) {
    request.headers.emplace_back("X-Amz-Content-Sha256", Sha256Hex(request.body));
  }
  std::string authorization = AuthorizationHeader(credentials, amz_date, scope, request);
  request.headers.emplace_back("Authorization", authorization);
}

}  // namespace yard::aws
