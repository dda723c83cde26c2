// Ec2Client over HTTPS (AWS's endpoints are HTTPS only): against a local
// cpp-httplib TLS server (client/tls_server_testing.h) with a certificate made here, trusted
// through Ec2ClientOptions::ca_file; refused, at once and saying why, when the certificate is not
// in the CA bundle.
#include <gtest/gtest.h>
#include <httplib.h>

#include <mutex>

#include "aws/ec2_client.h"
#include "client/tls_server_testing.h"
#include "common/temp_dir_testing.h"

namespace yard::aws {
namespace {

constexpr char kSpotPrices[] =
    R"(<?xml version="1.0" encoding="UTF-8"?>
<DescribeSpotPriceHistoryResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>r-1</requestId>
  <spotPriceHistorySet>
    <item><instanceType>p2.xlarge</instanceType><productDescription>Linux/UNIX</productDescription>
      <spotPrice>0.270000</spotPrice><timestamp>2026-12-06T03:00:00.000Z</timestamp>
      <availabilityZone>us-east-1a</availabilityZone></item>
    <item><instanceType>p2.xlarge</instanceType><productDescription>Linux/UNIX</productDescription>
      <spotPrice>0.300000</spotPrice><timestamp>2026-12-06T04:00:00.000Z</timestamp>
      <availabilityZone>us-east-1a</availabilityZone></item>
  </spotPriceHistorySet>
  <nextToken/>
</DescribeSpotPriceHistoryResponse>)";

// The EC2 endpoint: answers every query with kSpotPrices and keeps the
// Authorization header it was sent.
class Ec2Endpoint {
 public:
  explicit Ec2Endpoint(const test_support::TempDir& dir)
      : server_(dir, [this](httplib::SSLServer& s) {
          s.Post("/", [this](const httplib::Request& req, httplib::Response& res) {
            std::lock_guard<std::mutex> lock(mu_);
            last_authorization_ = req.get_header_value("Authorization");
            res.set_content(kSpotPrices, "text/xml;charset=UTF-8");
          });
        }) {}
  std::string url() const { return server_.url(); }
  const std::string& cert() const { return server_.cert_file(); }
  std::string last_authorization() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_authorization_;
  }

 private:
  std::mutex mu_;
  std::string last_authorization_;
  test_support::TlsServer server_;  // last: stopped before the fields its handler uses
};

std::unique_ptr<Ec2Client> ClientOf(const std::string& url, const std::string& ca_file,
                                    std::vector<double>* sleeps) {
  Ec2ClientOptions o;
  o.region = "us-east-1";
  o.endpoint = url;
  o.ca_file = ca_file;
  Credentials c;
  c.access_key_id = "AKID";
  c.secret_access_key = "secret";
  return std::make_unique<Ec2Client>(o, StaticCredentialsProvider(c),
                                     [sleeps](double s) { sleeps->push_back(s); });
}

TEST(Ec2ClientTls, TrustedCertificateWorksAndNewestPriceWins) {
  test_support::TempDir dir;
  Ec2Endpoint server(dir);
  std::vector<double> sleeps;
  auto prices =
      ClientOf(server.url(), server.cert(), &sleeps)->DescribeSpotPriceHistory("p2.xlarge");
  ASSERT_TRUE(prices.ok()) << prices.status().ToString();
  ASSERT_EQ(prices->size(), 1u);
  EXPECT_EQ((*prices)[0].availability_zone, "us-east-1a");
  EXPECT_DOUBLE_EQ((*prices)[0].price_per_hour, 0.30);
  EXPECT_EQ(server.last_authorization().rfind("AWS4-HMAC-SHA256 Credential=AKID/", 0), 0u);
}

TEST(Ec2ClientTls, UntrustedCertificateIsRefusedAtOnce) {
  test_support::TempDir dir;
  Ec2Endpoint server(dir);
  std::vector<double> sleeps;
  Ec2Error e;
  auto r = ClientOf(server.url(), "", &sleeps)->DescribeSpotPriceHistory("p2.xlarge", &e);
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find("TLS certificate of " + server.url() + " is not trusted"),
            std::string::npos)
      << r.status().message();
  EXPECT_TRUE(sleeps.empty());
  EXPECT_TRUE(server.last_authorization().empty());  // nothing was sent
}

}  // namespace
}  // namespace yard::aws
