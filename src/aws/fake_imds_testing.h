// For tests only: a tiny IMDSv2 server on loopback (cpp-httplib) whose
// answers a test controls: tokens it can forget, role credentials that
// change on each fetch, and counts of each request. For behaviour
// ec2-metadata-mock cannot be made to show (token expiry, rotation).
#pragma once

#include <httplib.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>

namespace yard::test_support {

class FakeImds {
 public:
  FakeImds() {
    server_.Put("/latest/api/token", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      ++token_puts_;
      if (req.get_header_value("X-aws-ec2-metadata-token-ttl-seconds").empty()) {
        res.status = 400;
        return;
      }
      token_ = "token-" + std::to_string(token_puts_);
      res.set_content(token_, "text/plain");
    });
    server_.Get(R"(/latest/(.*))", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      ++gets_;
      if (req.get_header_value("X-aws-ec2-metadata-token") != token_) {
        res.status = 401;
        return;
      }
      std::string path = req.matches[1];
      if (path == "meta-data/iam/security-credentials/") {
        res.set_content("test-role\n", "text/plain");
      } else if (path == "meta-data/iam/security-credentials/test-role") {
        ++credential_fetches_;
        res.set_content(
            R"({"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "ASIA)" +
                std::to_string(credential_fetches_) +
                R"(", "SecretAccessKey": "secret", "Token": "session", "Expiration": ")" +
                expiration_ + "\"}",
            "application/json");
      } else if (path == "meta-data/instance-id") {
        res.set_content("i-fake", "text/plain");
      } else {
        res.status = 404;
      }
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::yield();
  }
  ~FakeImds() {
    server_.stop();
    thread_.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // Makes the current token unknown, as after the service's restart.
  void ForgetToken() {
    std::lock_guard<std::mutex> lock(mu_);
    token_ = "forgotten";
  }
  void SetExpiration(const std::string& iso8601) {
    std::lock_guard<std::mutex> lock(mu_);
    expiration_ = iso8601;
  }
  int token_puts() {
    std::lock_guard<std::mutex> lock(mu_);
    return token_puts_;
  }
  int credential_fetches() {
    std::lock_guard<std::mutex> lock(mu_);
    return credential_fetches_;
  }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  std::string token_ = "none-yet";
  std::string expiration_ = "2030-01-01T00:00:00Z";
  int token_puts_ = 0;
  int gets_ = 0;
  int credential_fetches_ = 0;
};

}  // namespace yard::test_support
