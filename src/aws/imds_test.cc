// ImdsClient against Amazon's ec2-metadata-mock (IMDSv1+v2 and IMDSv2-only,
// a spot notice after a delay) and against FakeImds for token renewal.
#include "aws/imds.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <thread>

#include "aws/fake_imds_testing.h"
#include "aws/harness_testing.h"

namespace yard::aws {
namespace {

using test_support::AwsHarness;

std::unique_ptr<AwsHarness> StartMock(std::vector<std::string> args) {
  args.insert(args.begin(), "metadata-mock");
  return AwsHarness::Start(args);
}

#define SKIP_WITHOUT_MOCK() \
  if (std::string r = AwsHarness::SkipReason({"metadata-mock"}); !r.empty()) GTEST_SKIP() << r

TEST(Imds, ReadsMetadataThroughImdsv2OnlyMock) {
  SKIP_WITHOUT_MOCK();
  auto mock = StartMock({"--imdsv2-only"});
  ASSERT_TRUE(mock);
  std::string url = mock->info()["imds"];
  // The mock really refuses requests without a token in this mode.
  httplib::Client raw(url);
  auto unauth = raw.Get("/latest/meta-data/instance-id");
  ASSERT_TRUE(unauth);
  EXPECT_EQ(unauth->status, 401);

  ImdsClient imds(url);
  auto id = imds.Get("meta-data/instance-id");
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(id->rfind("i-", 0), 0u) << *id;
  auto role = imds.Get("meta-data/iam/security-credentials/");
  ASSERT_TRUE(role.ok()) << role.status().ToString();
  EXPECT_FALSE(role->empty());
  auto missing = imds.Get("meta-data/no-such-thing");
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
}

TEST(Imds, SpotNoticeIsNotFoundUntilTheMockSendsIt) {
  SKIP_WITHOUT_MOCK();
  auto started = std::chrono::steady_clock::now();
  auto mock = StartMock({"--imdsv2-only", "--spot-terminate-after", "3"});
  ASSERT_TRUE(mock);
  ImdsClient imds(mock->info()["imds"].get<std::string>());
  auto first = imds.Get("meta-data/spot/instance-action");
  if (std::chrono::steady_clock::now() - started < std::chrono::seconds(1)) {
    EXPECT_EQ(first.status().code(), Code::kNotFound) << first.status().ToString();
  }
  StatusOr<std::string> notice = NotFound("not yet");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!notice.ok() && std::chrono::steady_clock::now() < deadline) {
    notice = imds.Get("meta-data/spot/instance-action");
    if (!notice.ok()) {
      ASSERT_EQ(notice.status().code(), Code::kNotFound) << notice.status().ToString();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  ASSERT_TRUE(notice.ok()) << "no spot notice within 60 s";
  EXPECT_NE(notice->find("\"action\": \"terminate\""), std::string::npos) << *notice;
  // The mock counts its delay in whole seconds: the notice can be up to 1 s early.
  EXPECT_GE(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
}

TEST(Imds, RenewsTheTokenWhenTheServiceForgetsIt) {
  test_support::FakeImds fake;
  ImdsClient imds(fake.url());
  ASSERT_TRUE(imds.Get("meta-data/instance-id").ok());
  ASSERT_TRUE(imds.Get("meta-data/instance-id").ok());
  EXPECT_EQ(fake.token_puts(), 1);  // one token for both
  fake.ForgetToken();
  auto id = imds.Get("meta-data/instance-id");
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(*id, "i-fake");
  EXPECT_EQ(fake.token_puts(), 2);
}

TEST(Imds, UnreachableServiceIsUnavailableNamingTheAddress) {
  ImdsClient imds("http://127.0.0.1:1", 1);
  auto r = imds.Get("meta-data/instance-id");
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find("http://127.0.0.1:1"), std::string::npos);
  EXPECT_NE(r.status().message().find("AWS_EC2_METADATA_SERVICE_ENDPOINT"), std::string::npos);
}

TEST(Imds, EndpointFromEnvironment) {
  EXPECT_EQ(ImdsEndpoint({}), "http://169.254.169.254");
  EXPECT_EQ(ImdsEndpoint({{"AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1338/"}}),
            "http://127.0.0.1:1338");
  EXPECT_EQ(ImdsClient("").endpoint(), "http://169.254.169.254");
}

}  // namespace
}  // namespace yard::aws
