// ImdsClient: the EC2 instance metadata service, IMDSv2 only (a session
// token from PUT /latest/api/token, sent as X-aws-ec2-metadata-token).
// The address is http://169.254.169.254 unless
// AWS_EC2_METADATA_SERVICE_ENDPOINT says otherwise (as in AWS's SDKs);
// tests point it at Amazon's ec2-metadata-mock on loopback.
#pragma once

#include <optional>
#include <string>

#include "common/status.h"

namespace yard::aws {

class ImdsClient {
 public:
  // `endpoint`: "http://host:port"; empty = the default address.
  explicit ImdsClient(std::string endpoint, double timeout_s = 2);
  // GET /latest/<path> ("meta-data/spot/instance-action"). NotFound on a
  // 404 (no notice yet is a 404); Unavailable when the service is not
  // reachable. Fetches and renews the session token as needed.
  StatusOr<std::string> Get(const std::string& path);

 private:
  std::string endpoint_;
  double timeout_s_;
  std::string token_;
  double token_expires_ = 0;
};

}  // namespace yard::aws
