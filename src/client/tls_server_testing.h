// For tests only (uses GoogleTest): an HTTPS server on 127.0.0.1 with a
// self-signed certificate made for it, answering GET /v1/health.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>

#include <memory>
#include <string>
#include <thread>

#include "common/files.h"
#include "common/temp_dir_testing.h"
#include "common/tls.h"

namespace yard::test_support {

class TlsServer {
 public:
  explicit TlsServer(const TempDir& dir) {
    TlsFiles files{dir.path() + "/cert.pem", dir.path() + "/key.pem"};
    EXPECT_TRUE(WriteSelfSignedCertificate(files, {"127.0.0.1"}).ok());
    fingerprint_ = *PemFingerprint(*ReadFile(files.cert));
    server_ = std::make_unique<httplib::SSLServer>(files.cert.c_str(), files.key.c_str());
    server_->Get("/v1/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("{\"ok\": true}", "application/json");
    });
    server_->set_keep_alive_timeout(1);  // closes an idle connection with a close_notify
    port_ = server_->bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    while (!server_->is_running()) std::this_thread::yield();
  }
  ~TlsServer() {
    server_->stop();
    thread_.join();
  }
  TlsServer(const TlsServer&) = delete;
  TlsServer& operator=(const TlsServer&) = delete;
  std::string url(const char* scheme = "https") const {
    return std::string(scheme) + "://127.0.0.1:" + std::to_string(port_);
  }
  const std::string& fingerprint() const { return fingerprint_; }

 private:
  std::string fingerprint_;
  std::unique_ptr<httplib::SSLServer> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace yard::test_support
