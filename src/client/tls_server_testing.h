// For tests only (uses GoogleTest): an HTTPS server on 127.0.0.1 with a
// self-signed certificate made for it (written into the test's folder, so a
// client can be told to trust it), answering GET /v1/health or the routes a
// test gives.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/files.h"
#include "common/temp_dir_testing.h"
#include "common/tls.h"

namespace yard::test_support {

class TlsServer {
 public:
  // Registers the server's handlers; runs before the server listens.
  using Routes = std::function<void(httplib::SSLServer&)>;

  static void HealthRoute(httplib::SSLServer& server) {
    server.Get("/v1/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("{\"ok\": true}", "application/json");
    });
  }

  explicit TlsServer(const TempDir& dir, const Routes& routes = HealthRoute)
      : files_{dir.path() + "/cert.pem", dir.path() + "/key.pem"} {
    EXPECT_TRUE(WriteSelfSignedCertificate(files_, {"127.0.0.1"}).ok());
    fingerprint_ = *PemFingerprint(*ReadFile(files_.cert));
    server_ = std::make_unique<httplib::SSLServer>(files_.cert.c_str(), files_.key.c_str());
    routes(*server_);
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
  // The PEM certificate, for a client's CA file.
  const std::string& cert_file() const { return files_.cert; }

 private:
  TlsFiles files_;
  std::string fingerprint_;
  std::unique_ptr<httplib::SSLServer> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace yard::test_support
