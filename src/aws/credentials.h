// AWS credentials and endpoints, resolved the way AWS's own tools do.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/clock.h"
#include "common/status.h"

namespace yard::aws {

struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // empty for long-term keys
  std::string source;         // "environment", "profile NAME", "instance role": for messages
  double expires_at = 0;      // Unix seconds; 0 = does not expire
};

// Reads environment variables through a map, so tests need not touch the
// process environment. Empty map entries count as unset.
using Environment = std::map<std::string, std::string>;
Environment ProcessEnvironment();

// The chain, in order (the first place with credentials wins; a place
// that is configured but broken, e.g. AWS_PROFILE naming a profile that no
// file has, is an error at once rather than a fall-through):
// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
// (+AWS_SESSION_TOKEN); then AWS_PROFILE (default "default") from
// AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials) and AWS_CONFIG_FILE
// (~/.aws/config, "[profile NAME]" sections); then the instance role
// through IMDSv2 (AWS_EC2_METADATA_SERVICE_ENDPOINT overrides the address;
// AWS_EC2_METADATA_DISABLED=true skips it). Unauthenticated, naming every
// place looked at, when none has credentials.
// Role credentials are cached and refreshed 5 minutes before they expire;
// when a refresh fails they are used until they actually expire. Profile
// files are read again on each Get (so rotated keys are picked up).
class CredentialsProvider {
 public:
  virtual ~CredentialsProvider() = default;
  // Current credentials; refreshes role credentials before they expire.
  virtual StatusOr<Credentials> Get() = 0;
};
// `clock` (not owned; nullptr: the real clock) decides role credential expiry.
// HOME from `env` locates ~/.aws.
std::unique_ptr<CredentialsProvider> DefaultCredentialsChain(Environment env,
                                                             const Clock* clock = nullptr);
// Always the same credentials (tests, and callers that resolved them already).
std::unique_ptr<CredentialsProvider> StaticCredentialsProvider(Credentials credentials);

// The EC2 endpoint: `configured` (providers.aws.endpoint_url) if set, else
// AWS_ENDPOINT_URL_EC2, else AWS_ENDPOINT_URL, else https://ec2.REGION.amazonaws.com.
std::string Ec2Endpoint(const std::string& region, const std::string& configured,
                        const Environment& env);

}  // namespace yard::aws
