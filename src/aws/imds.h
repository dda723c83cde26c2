// ImdsClient: the EC2 instance metadata service, IMDSv2 only (a session
// token from PUT /latest/api/token, sent as X-aws-ec2-metadata-token).
// The address is http://169.254.169.254 unless
// AWS_EC2_METADATA_SERVICE_ENDPOINT says otherwise (as in AWS's SDKs);
// tests point it at Amazon's ec2-metadata-mock on loopback.
#pragma once

#include <mutex>
#include <optional>
#include <string>

#include "aws/credentials.h"
#include "common/status.h"
#include "common/thread_annotations.h"

namespace yard::aws {

// AWS_EC2_METADATA_SERVICE_ENDPOINT from `env` (trailing '/' dropped), else
// "http://169.254.169.254".
std::string ImdsEndpoint(const Environment& env);

class ImdsClient {
 public:
  // `endpoint`: "http://host:port"; empty = the default address.
  // `timeout_s` bounds each connect and each read.
  explicit ImdsClient(std::string endpoint, double timeout_s = 2);
  // GET /latest/<path> ("meta-data/spot/instance-action"). NotFound on a
  // 404 (no notice yet is a 404); Unavailable when the service is not
  // reachable or refuses a token. Fetches the session token on first use,
  // renews it a minute before its TTL (6 h) runs out, and once more when
  // the service answers 401 (a token it no longer knows). Thread-safe.
  StatusOr<std::string> Get(const std::string& path);

  const std::string& endpoint() const { return endpoint_; }

 private:
  StatusOr<std::string> Token(bool force_new);

  std::string endpoint_;
  double timeout_s_;
  Mutex mu_;
  std::string token_ GUARDED_BY(mu_);
  double token_expires_ GUARDED_BY(mu_) = 0;  // steady-clock seconds
};

}  // namespace yard::aws
