// Ec2Client: Ec2Api over EC2's Query API (form-encoded POST to the
// endpoint's "/", Action + Version=2016-11-15, SigV4 service "ec2", XML
// answers read with pugixml). HTTPS for AWS (cpp-httplib with OpenSSL,
// certificates checked against the system's CA bundle), plain HTTP for
// moto and other local endpoints.
//
// Retries: a call that fails with RequestLimitExceeded/Throttling, a 5xx
// that is not a capacity code, or no answer at all is tried again, up to
// `max_attempts` in all, after a delay drawn uniformly from
// [0, min(max_backoff_s, base_backoff_s * 2^retry)] ("full jitter"). When
// they run out the error stands: a request limit is then kCapacity (the
// scheduler falls back), the rest kTransient. Capacity, auth and
// bad-request errors are never retried, nor is an untrusted TLS
// certificate (kTransient at once, saying so). RunInstances always carries a
// ClientToken (the request's, else a random one), so a retry never
// launches twice.
//
// Thread-safe: each call makes its own connection.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "aws/credentials.h"
#include "aws/ec2.h"
#include "common/clock.h"
#include "common/thread_annotations.h"

namespace yard::aws {

struct Ec2ClientOptions {
  std::string region;    // required: "us-east-1"
  std::string endpoint;  // "https://ec2.us-east-1.amazonaws.com" (see Ec2Endpoint)
  int max_attempts = 5;  // per call, including the first
  double base_backoff_s = 0.5;
  double max_backoff_s = 20;
  double connect_timeout_s = 10;
  double read_timeout_s = 60;
  int describe_page_size = 0;  // DescribeInstances MaxResults; 0: EC2's default
  std::string ca_file;         // PEM CAs for HTTPS; "": the system's bundle
};

using QueryParams = std::vector<std::pair<std::string, std::string>>;

class Ec2Client : public Ec2Api {
 public:
  // `credentials` is asked before every attempt (so refreshed role
  // credentials are used). `sleep` waits between retries (tests pass one
  // that records instead); `clock` dates the signatures. Both may be null.
  Ec2Client(Ec2ClientOptions options, std::shared_ptr<CredentialsProvider> credentials,
            std::function<void(double seconds)> sleep = nullptr, const Clock* clock = nullptr);

  StatusOr<Ec2Instance> RunInstance(const RunInstanceRequest& request,
                                    Ec2Error* error = nullptr) override;
  StatusOr<std::vector<Ec2Instance>> DescribeInstances(
      const std::vector<std::string>& instance_ids,
      const std::map<std::string, std::string>& filters, Ec2Error* error = nullptr) override;
  Status TerminateInstances(const std::vector<std::string>& instance_ids,
                            Ec2Error* error = nullptr) override;
  StatusOr<std::vector<Ec2Image>> DescribeImages(const std::vector<std::string>& image_ids,
                                                 Ec2Error* error = nullptr) override;
  StatusOr<std::vector<SpotPrice>> DescribeSpotPriceHistory(const std::string& instance_type,
                                                            Ec2Error* error = nullptr) override;

  // One Query API call with signing, retries and error parsing: the XML
  // body of a successful answer. For calls this class has no method for
  // (DescribeInstanceAttribute, ...).
  StatusOr<std::string> Call(const std::string& action, const QueryParams& params,
                             Ec2Error* error = nullptr);

  // The images of a DescribeImages answer (for tests of recorded answers).
  static StatusOr<std::vector<Ec2Image>> ParseDescribeImages(const std::string& body);

  // The query parameters RunInstance sends for `request` (for tests and
  // for the curious).
  static QueryParams RunInstancesParams(const RunInstanceRequest& request,
                                        const std::string& client_token);

 private:
  struct Answer {
    int status = 0;  // 0: no answer
    std::string body;
    std::string transport_error;
    bool untrusted = false;  // the TLS certificate was refused: no retry
  };
  Answer Send(const std::string& body, const Credentials& credentials);
  double Backoff(int retry);
  Status TerminateOneByOne(const std::vector<std::string>& ids, Ec2Error* error);

  Ec2ClientOptions options_;
  std::shared_ptr<CredentialsProvider> credentials_;
  std::function<void(double)> sleep_;
  RealClock real_clock_;
  const Clock* clock_;
  Mutex rng_mu_;
  std::mt19937_64 rng_ GUARDED_BY(rng_mu_);
};

}  // namespace yard::aws
