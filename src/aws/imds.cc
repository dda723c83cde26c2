#include "aws/imds.h"

#include <httplib.h>

#include <chrono>

namespace yard::aws {
namespace {

constexpr int kTokenTtlSeconds = 21600;
constexpr double kRenewBeforeSeconds = 60;

double SteadyNow() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

std::string TrimSlash(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

std::unique_ptr<httplib::Client> MakeClient(const std::string& endpoint, double timeout_s) {
  auto client = std::make_unique<httplib::Client>(endpoint);
  auto t = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::duration<double>(timeout_s));
  client->set_connection_timeout(t);
  client->set_read_timeout(t);
  client->set_write_timeout(t);
  return client;
}

Status Unreachable(const std::string& endpoint, const std::string& what) {
  return Unavailable("instance metadata service at " + endpoint + " " + what +
                     " (not on EC2? AWS_EC2_METADATA_SERVICE_ENDPOINT sets the address)");
}

}  // namespace

std::string ImdsEndpoint(const Environment& env) {
  auto it = env.find("AWS_EC2_METADATA_SERVICE_ENDPOINT");
  if (it != env.end() && !it->second.empty()) return TrimSlash(it->second);
  return "http://169.254.169.254";
}

ImdsClient::ImdsClient(std::string endpoint, double timeout_s)
    : endpoint_(endpoint.empty() ? "http://169.254.169.254" : TrimSlash(std::move(endpoint))),
      timeout_s_(timeout_s) {}

StatusOr<std::string> ImdsClient::Token(bool force_new) {
  MutexLock lock(mu_);
  if (!force_new && !token_.empty() && SteadyNow() < token_expires_ - kRenewBeforeSeconds) {
    return token_;
  }
  auto client = MakeClient(endpoint_, timeout_s_);
  httplib::Headers headers{
      {"X-aws-ec2-metadata-token-ttl-seconds", std::to_string(kTokenTtlSeconds)}};
  auto res = client->Put("/latest/api/token", headers, "", "text/plain");
  if (!res) return Unreachable(endpoint_, "is not reachable: " + httplib::to_string(res.error()));
  if (res->status != 200 || res->body.empty()) {
    return Unreachable(
        endpoint_, "refused an IMDSv2 session token (HTTP " + std::to_string(res->status) + ")");
  }
  token_ = res->body;
  token_expires_ = SteadyNow() + kTokenTtlSeconds;
  return token_;
}

StatusOr<std::string> ImdsClient::Get(const std::string& path) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    YARD_ASSIGN_OR_RETURN(std::string token, Token(/*force_new=*/attempt > 0));
    auto client = MakeClient(endpoint_, timeout_s_);
    auto res =
        client->Get("/latest/" + path, httplib::Headers{{"X-aws-ec2-metadata-token", token}});
    if (!res) return Unreachable(endpoint_, "is not reachable: " + httplib::to_string(res.error()));
    if (res->status == 200) return res->body;
    if (res->status == 404) return NotFound("instance metadata " + path + ": not found");
    if (res->status != 401) {
      return Unavailable("instance metadata " + path + ": HTTP " + std::to_string(res->status) +
                         " from " + endpoint_);
    }
  }
  return Unavailable("instance metadata service at " + endpoint_ +
                     " refused a fresh IMDSv2 token (HTTP 401 twice)");
}

}  // namespace yard::aws
