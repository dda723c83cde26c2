// Ec2Client against moto's EC2 server (through the fault proxy of
// tests/aws_harness.py, which also counts requests per action), with boto3
// as an independent observer of moto's view: spot and on-demand launches,
// tags, user data, filters and paging, terminate, spot prices; every error
// class through injected EC2 error documents; retries with backoff; and
// moto's IAM enforcement for bad keys and missing permissions.
#include "aws/ec2_client.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>

#include "aws/harness_testing.h"
#include "common/command_runner.h"
#include "common/files.h"

namespace yard::aws {
namespace {

using nlohmann::json;
using test_support::AwsHarness;

Credentials Keys(const std::string& id, const std::string& secret) {
  Credentials c;
  c.access_key_id = id;
  c.secret_access_key = secret;
  return c;
}

class Ec2ClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { harness_ = AwsHarness::Start({"serve"}).release(); }
  static void TearDownTestSuite() {
    delete harness_;
    harness_ = nullptr;
  }
  void SetUp() override {
    if (std::string r = AwsHarness::SkipReason({"serve"}); !r.empty()) GTEST_SKIP() << r;
    ASSERT_TRUE(harness_) << "tests/aws_harness.py serve did not start";
    Proxy("DELETE", "/_fault/rules", "");
  }

  static const json& Info() { return harness_->info(); }
  std::string Subnet() { return Info()["subnet_id"]; }
  std::string Image() { return Info()["image_id"]; }

  // A client of moto through the fault proxy; its sleeps are recorded.
  std::unique_ptr<Ec2Client> Client(Ec2ClientOptions o = {}) {
    o.region = "us-east-1";
    if (o.endpoint.empty()) o.endpoint = Info()["proxy"];
    return std::make_unique<Ec2Client>(o, StaticCredentialsProvider(Keys("AKIDTEST", "secret")),
                                       [this](double s) { sleeps_.push_back(s); });
  }

  static json Proxy(const std::string& method, const std::string& path, const std::string& body) {
    httplib::Client c(Info()["proxy"].get<std::string>());
    auto r = method == "GET"    ? c.Get(path.c_str())
             : method == "POST" ? c.Post(path.c_str(), body, "application/json")
                                : c.Delete(path.c_str());
    EXPECT_TRUE(r && r->status == 200) << method << " " << path;
    return r ? json::parse(r->body, nullptr, false) : json();
  }
  static void Fail(json rule) { Proxy("POST", "/_fault/rules", rule.dump()); }
  static int Seen(const std::string& action) {
    return Proxy("GET", "/_fault/counts", "")["seen"].value(action, 0);
  }

  // boto3, straight to moto: an observer that does not share our code.
  static json Boto(const std::string& method, const json& kwargs, const std::string& decode = "") {
    CommandSpec spec;
    spec.argv = {AwsHarness::Python(), AwsHarness::Script(), "boto", Info()["moto"], "ec2", method,
                 kwargs.dump()};
    if (!decode.empty()) spec.argv.insert(spec.argv.end(), {"--decode-base64", decode});
    spec.timeout = std::chrono::milliseconds(60000);
    auto r = ProcessCommandRunner().Run(spec);
    EXPECT_TRUE(r.ok() && r->ok()) << (r.ok() ? r->err : r.status().ToString());
    return r.ok() ? json::parse(r->out, nullptr, false) : json();
  }
  static json BotoInstance(const std::string& id) {
    return Boto("describe_instances", {{"InstanceIds", {id}}})["Reservations"][0]["Instances"][0];
  }

  RunInstanceRequest Request(const std::string& type, bool spot, const std::string& tag_value) {
    RunInstanceRequest r;
    r.image_id = Image();
    r.instance_type = type;
    r.spot = spot;
    r.subnet_id = Subnet();
    r.tags = {{"trainyard:server", tag_value}, {"Name", "trainyard " + tag_value}};
    return r;
  }

  static AwsHarness* harness_;
  std::vector<double> sleeps_;
};
AwsHarness* Ec2ClientTest::harness_ = nullptr;

TEST_F(Ec2ClientTest, SpotLaunchWithTagsUserDataAndLoopbackAddress) {
  auto client = Client();
  RunInstanceRequest r = Request("g4dn.xlarge", /*spot=*/true, "spot-test");
  r.user_data = "#!/bin/bash\necho 'hello from user-data' > /tmp/x\n";
  r.root_volume_gb = 80;
  r.client_token = "yard-inst-1";
  auto inst = client->RunInstance(r);
  ASSERT_TRUE(inst.ok()) << inst.status().ToString();
  EXPECT_EQ(inst->instance_id.rfind("i-", 0), 0u);
  EXPECT_EQ(inst->instance_type, "g4dn.xlarge");
  EXPECT_EQ(inst->lifecycle, "spot");
  EXPECT_EQ(inst->private_ip.rfind("127.1.1.", 0), 0u) << inst->private_ip;
  EXPECT_EQ(inst->tags.at("trainyard:server"), "spot-test");
  EXPECT_GT(inst->launch_time, 1.6e9);

  json seen = BotoInstance(inst->instance_id);
  EXPECT_EQ(seen["InstanceLifecycle"], "spot");
  EXPECT_EQ(seen["SubnetId"], Subnet());
  json tags = json::object();
  for (const auto& t : seen["Tags"]) tags[t["Key"].get<std::string>()] = t["Value"];
  EXPECT_EQ(tags["trainyard:server"], "spot-test");
  EXPECT_EQ(tags["Name"], "trainyard spot-test");
  json attr =
      Boto("describe_instance_attribute",
           {{"InstanceId", inst->instance_id}, {"Attribute", "userData"}}, "UserData.Value");
  EXPECT_EQ(attr["decoded"], r.user_data);
}

TEST_F(Ec2ClientTest, OnDemandLaunchHasNoSpotLifecycle) {
  auto inst = Client()->RunInstance(Request("t3.micro", /*spot=*/false, "on-demand-test"));
  ASSERT_TRUE(inst.ok()) << inst.status().ToString();
  EXPECT_EQ(inst->lifecycle, "");
  EXPECT_FALSE(BotoInstance(inst->instance_id).contains("InstanceLifecycle"));
}

TEST_F(Ec2ClientTest, RunInstancesParamsCarryEveryOption) {
  RunInstanceRequest r = Request("p2.xlarge", true, "x");
  r.security_group_ids = {"sg-1", "sg-2"};
  r.key_name = "mykey";
  r.iam_instance_profile = "arn:aws:iam::1:instance-profile/yard";
  r.root_volume_gb = 100;
  r.root_device_name = "/dev/xvda";
  r.user_data = "hi";
  QueryParams p = Ec2Client::RunInstancesParams(r, "tok");
  std::map<std::string, std::string> m(p.begin(), p.end());
  EXPECT_EQ(m["InstanceMarketOptions.MarketType"], "spot");
  EXPECT_EQ(m["InstanceMarketOptions.SpotOptions.SpotInstanceType"], "one-time");
  EXPECT_EQ(m["InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior"], "terminate");
  EXPECT_EQ(m["SecurityGroupId.2"], "sg-2");
  EXPECT_EQ(m["KeyName"], "mykey");
  EXPECT_EQ(m["IamInstanceProfile.Arn"], "arn:aws:iam::1:instance-profile/yard");
  EXPECT_EQ(m["BlockDeviceMapping.1.DeviceName"], "/dev/xvda");
  EXPECT_EQ(m["BlockDeviceMapping.1.Ebs.VolumeSize"], "100");
  EXPECT_EQ(m["UserData"], "aGk=");
  EXPECT_EQ(m["TagSpecification.1.ResourceType"], "instance");
  EXPECT_EQ(m["TagSpecification.2.ResourceType"], "volume");
  EXPECT_EQ(m["TagSpecification.2.Tag.1.Key"], "trainyard:server");
  EXPECT_EQ(m["ClientToken"], "tok");
  r.iam_instance_profile = "yard-profile";
  r.spot = false;
  std::map<std::string, std::string> m2;
  for (auto& [k, v] : Ec2Client::RunInstancesParams(r, "tok")) m2[k] = v;
  EXPECT_EQ(m2["IamInstanceProfile.Name"], "yard-profile");
  EXPECT_EQ(m2.count("InstanceMarketOptions.MarketType"), 0u);
}

TEST(Ec2ClientParse, DescribeImagesReadsTheRootDeviceOfAnAnswerInEc2sShape) {
  StatusOr<std::string> body =
      ReadFile(std::string(YARD_SOURCE_DIR) + "/src/aws/testdata/ec2/describe_images_al2023.xml");
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  auto images = Ec2Client::ParseDescribeImages(*body);
  ASSERT_TRUE(images.ok()) << images.status().ToString();
  ASSERT_EQ(images->size(), 1u) << "the block device mapping's items are not images";
  EXPECT_EQ((*images)[0].image_id, "ami-0abcdef1234567890");
  EXPECT_EQ((*images)[0].root_device_name, "/dev/xvda");
  EXPECT_EQ((*images)[0].root_device_type, "ebs");
  EXPECT_EQ((*images)[0].state, "available");
  EXPECT_EQ((*images)[0].name, "al2023-ami-2023.6.20241212.0-kernel-6.1-x86_64");
  auto none = Ec2Client::ParseDescribeImages(
      "<DescribeImagesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">"
      "<requestId>r</requestId><imagesSet/></DescribeImagesResponse>");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_FALSE(Ec2Client::ParseDescribeImages("not xml <").ok());
}

TEST_F(Ec2ClientTest, DescribeImagesGivesTheRootDeviceAndRunInstanceResizesIt) {
  // An image of moto's catalogue that boots from /dev/xvda (Amazon Linux).
  json listed = Boto("describe_images", {{"Owners", {"amazon"}}})["Images"];
  std::string xvda;
  for (const auto& i : listed)
    if (i.value("RootDeviceName", "") == "/dev/xvda" && i.value("Architecture", "") == "x86_64" &&
        (xvda.empty() || i["ImageId"].get<std::string>() < xvda))
      xvda = i["ImageId"];
  ASSERT_FALSE(xvda.empty()) << listed.dump();
  auto client = Client();
  int before = Seen("DescribeImages");
  auto images = client->DescribeImages({xvda});
  ASSERT_TRUE(images.ok()) << images.status().ToString();
  ASSERT_EQ(images->size(), 1u);
  EXPECT_EQ((*images)[0].image_id, xvda);
  EXPECT_EQ((*images)[0].root_device_name, "/dev/xvda");
  EXPECT_EQ(Seen("DescribeImages") - before, 1);

  RunInstanceRequest r = Request("t3.micro", false, "root-volume-test");
  r.image_id = xvda;
  r.root_volume_gb = 50;
  r.root_device_name = (*images)[0].root_device_name;
  auto inst = client->RunInstance(r);
  ASSERT_TRUE(inst.ok()) << inst.status().ToString();
  json seen = BotoInstance(inst->instance_id);
  EXPECT_EQ(seen["RootDeviceName"], "/dev/xvda");
  ASSERT_EQ(seen["BlockDeviceMappings"].size(), 1u) << seen["BlockDeviceMappings"].dump();
  EXPECT_EQ(seen["BlockDeviceMappings"][0]["DeviceName"], "/dev/xvda");
  json volumes = Boto("describe_volumes",
                      {{"VolumeIds", {seen["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]}}});
  EXPECT_EQ(volumes["Volumes"][0]["Size"], 50);
}

TEST_F(Ec2ClientTest, DescribeImagesOfAMissingOrMalformedAmiIsABadRequest) {
  auto client = Client();
  Ec2Error e;
  auto missing = client->DescribeImages({"ami-00000000deadbeef0"}, &e);
  EXPECT_EQ(missing.status().code(), Code::kInvalidArgument) << missing.status().ToString();
  EXPECT_EQ(e.kind, Ec2ErrorKind::kBadRequest);
  EXPECT_EQ(e.code, "InvalidAMIID.NotFound");
  EXPECT_NE(missing.status().message().find("EC2 DescribeImages: InvalidAMIID.NotFound"),
            std::string::npos)
      << missing.status().message();
  Ec2Error m;
  auto malformed = client->DescribeImages({"not-an-ami"}, &m);
  EXPECT_EQ(m.kind, Ec2ErrorKind::kBadRequest) << malformed.status().ToString();
  EXPECT_EQ(m.code, "InvalidAMIID.Malformed");
  EXPECT_TRUE(sleeps_.empty()) << "not retried";
}

TEST_F(Ec2ClientTest, DescribeImagesRefusedNamesTheIamAction) {
  Fail({{"action", "DescribeImages"},
        {"code", "UnauthorizedOperation"},
        {"status", 403},
        {"message", "You are not authorized to perform this operation."}});
  Ec2Error e;
  auto r = Client()->DescribeImages({Image()}, &e);
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(e.missing_action, "ec2:DescribeImages");
}

TEST_F(Ec2ClientTest, DescribeFollowsPagesAndFilters) {
  Ec2ClientOptions o;
  o.describe_page_size = 5;
  auto client = Client(o);
  std::set<std::string> mine;
  for (int i = 0; i < 7; ++i) {
    auto inst = client->RunInstance(Request("t3.micro", false, "paging-server"));
    ASSERT_TRUE(inst.ok()) << inst.status().ToString();
    mine.insert(inst->instance_id);
  }
  ASSERT_TRUE(client->RunInstance(Request("t3.micro", false, "someone-else")).ok());
  int before = Seen("DescribeInstances");
  auto found = client->DescribeInstances({}, {{"tag:trainyard:server", "paging-server"}});
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  std::set<std::string> ids;
  for (const auto& i : *found) ids.insert(i.instance_id);
  EXPECT_EQ(ids, mine);
  EXPECT_EQ(Seen("DescribeInstances") - before, 2);  // 5 + 2: two pages

  auto one = client->DescribeInstances({*mine.begin()}, {});
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].instance_id, *mine.begin());
  EXPECT_EQ((*one)[0].tags.at("trainyard:server"), "paging-server");
}

TEST_F(Ec2ClientTest, TerminateIsIdempotentOnUnknownIds) {
  auto client = Client();
  auto a = client->RunInstance(Request("t3.micro", false, "terminate-test"));
  auto b = client->RunInstance(Request("t3.micro", false, "terminate-test"));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(client->TerminateInstances({a->instance_id}).ok());
  EXPECT_EQ(BotoInstance(a->instance_id)["State"]["Name"], "terminated");
  Status unknown = client->TerminateInstances({"i-0123456789abcdef0"});
  EXPECT_TRUE(unknown.ok()) << unknown.ToString();
  Status mixed = client->TerminateInstances({"i-0123456789abcdef0", b->instance_id});
  EXPECT_TRUE(mixed.ok()) << mixed.ToString();
  EXPECT_EQ(BotoInstance(b->instance_id)["State"]["Name"], "terminated");
  auto seen = client->DescribeInstances({a->instance_id, b->instance_id}, {});
  ASSERT_TRUE(seen.ok());
  for (const auto& i : *seen) EXPECT_EQ(i.state, "terminated");
}

TEST_F(Ec2ClientTest, SpotPriceNewestPerZone) {
  auto prices = Client()->DescribeSpotPriceHistory("g4dn.xlarge");
  ASSERT_TRUE(prices.ok()) << prices.status().ToString();
  ASSERT_FALSE(prices->empty());
  std::set<std::string> zones;
  for (const auto& p : *prices) {
    EXPECT_EQ(p.instance_type, "g4dn.xlarge");
    EXPECT_GT(p.price_per_hour, 0);
    EXPECT_TRUE(zones.insert(p.availability_zone).second)
        << "two prices for " << p.availability_zone;
  }
}

TEST_F(Ec2ClientTest, CapacityErrorIsNotRetriedAndKeepsEc2sWords) {
  Fail({{"action", "RunInstances"},
        {"instance_type", "p2.xlarge"},
        {"code", "InsufficientInstanceCapacity"},
        {"status", 500},
        {"message", "We currently do not have sufficient p2.xlarge capacity."}});
  auto client = Client();
  int before = Seen("RunInstances");
  Ec2Error e;
  auto r = client->RunInstance(Request("p2.xlarge", true, "capacity-test"), &e);
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_EQ(e.kind, Ec2ErrorKind::kCapacity);
  EXPECT_EQ(e.code, "InsufficientInstanceCapacity");
  EXPECT_EQ(e.http_status, 500);
  EXPECT_FALSE(e.request_id.empty());
  EXPECT_NE(r.status().message().find("InsufficientInstanceCapacity: We currently do not have "
                                      "sufficient p2.xlarge capacity. (request id " +
                                      e.request_id + ")"),
            std::string::npos)
      << r.status().message();
  EXPECT_EQ(Seen("RunInstances") - before, 1);
  EXPECT_TRUE(sleeps_.empty());
  // Another type is not affected.
  EXPECT_TRUE(client->RunInstance(Request("g4dn.xlarge", true, "capacity-test")).ok());
}

TEST_F(Ec2ClientTest, UnauthorizedWithoutNamedActionNamesTheCallsAction) {
  Fail({{"action", "TerminateInstances"},
        {"code", "UnauthorizedOperation"},
        {"status", 403},
        {"message",
         "You are not authorized to perform this operation. Encoded authorization failure message: "
         "abc"}});
  Ec2Error e;
  Status s = Client()->TerminateInstances({"i-0123456789abcdef0"}, &e);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_EQ(e.kind, Ec2ErrorKind::kAuth);
  EXPECT_EQ(e.missing_action, "ec2:TerminateInstances");
  EXPECT_NE(s.message().find("Encoded authorization failure message: abc"), std::string::npos);
  EXPECT_NE(s.message().find("ec2:TerminateInstances (EC2 did not name it"), std::string::npos)
      << s.message();
  EXPECT_EQ(Seen("TerminateInstances"), 1);
}

TEST_F(Ec2ClientTest, ThrottlingIsRetriedWithBackoffThenSucceeds) {
  Fail({{"action", "DescribeInstances"},
        {"code", "RequestLimitExceeded"},
        {"status", 503},
        {"times", 2}});
  int before = Seen("DescribeInstances");
  auto r = Client()->DescribeInstances({}, {{"tag:trainyard:server", "nobody"}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->empty());
  EXPECT_EQ(Seen("DescribeInstances") - before, 3);
  ASSERT_EQ(sleeps_.size(), 2u);
  EXPECT_LE(sleeps_[0], 0.5);  // full jitter: [0, base * 2^retry]
  EXPECT_LE(sleeps_[1], 1.0);
}

TEST_F(Ec2ClientTest, RequestLimitAfterRetriesIsCapacity) {
  Fail({{"action", "RunInstances"},
        {"code", "RequestLimitExceeded"},
        {"status", 503},
        {"message", "Request limit exceeded."}});
  Ec2ClientOptions o;
  o.max_attempts = 4;
  o.base_backoff_s = 1;
  o.max_backoff_s = 3;
  int before = Seen("RunInstances");
  Ec2Error e;
  auto r = Client(o)->RunInstance(Request("t3.micro", false, "throttle-test"), &e);
  EXPECT_EQ(e.kind, Ec2ErrorKind::kCapacity);
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_NE(r.status().message().find("RequestLimitExceeded: Request limit exceeded."),
            std::string::npos);
  EXPECT_NE(r.status().message().find("gave up after 4 attempts"), std::string::npos)
      << r.status().message();
  EXPECT_EQ(Seen("RunInstances") - before, 4);
  ASSERT_EQ(sleeps_.size(), 3u);
  EXPECT_LE(sleeps_[2], 3.0);  // capped
}

TEST_F(Ec2ClientTest, ServerErrorsAreRetried) {
  Fail({{"action", "DescribeSpotPriceHistory"},
        {"code", "InternalError"},
        {"status", 500},
        {"times", 1}});
  auto r = Client()->DescribeSpotPriceHistory("g4dn.xlarge");
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(sleeps_.size(), 1u);
}

TEST_F(Ec2ClientTest, BadAmiIsABadRequest) {
  // moto launches any AMI id, so EC2's answer to a bad one is injected.
  Fail({{"action", "RunInstances"},
        {"instance_type", "m5.large"},
        {"code", "InvalidAMIID.NotFound"},
        {"status", 400},
        {"message", "The image id '[ami-00000000deadbeef0]' does not exist"}});
  RunInstanceRequest r = Request("m5.large", false, "bad-ami");
  r.image_id = "ami-00000000deadbeef0";
  Ec2Error e;
  auto inst = Client()->RunInstance(r, &e);
  EXPECT_EQ(e.kind, Ec2ErrorKind::kBadRequest) << inst.status().ToString();
  EXPECT_EQ(inst.status().code(), Code::kInvalidArgument);
  EXPECT_NE(inst.status().message().find(
                "InvalidAMIID.NotFound: The image id '[ami-00000000deadbeef0]' does not exist"),
            std::string::npos)
      << inst.status().message();
  EXPECT_TRUE(sleeps_.empty());
}

TEST_F(Ec2ClientTest, NoAnswerIsTransientAfterRetries) {
  Ec2ClientOptions o;
  o.endpoint = "http://127.0.0.1:1";
  o.max_attempts = 3;
  Ec2Error e;
  auto r = Client(o)->DescribeInstances({}, {}, &e);
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_EQ(e.kind, Ec2ErrorKind::kTransient);
  EXPECT_NE(r.status().message().find("no answer from http://127.0.0.1:1"), std::string::npos);
  EXPECT_EQ(sleeps_.size(), 2u);
}

// moto enforcing IAM: an unknown key and a user without ec2:RunInstances.
TEST(Ec2ClientAuth, UnknownKeyAndMissingPermission) {
  if (std::string r = AwsHarness::SkipReason({"serve"}); !r.empty()) GTEST_SKIP() << r;
  auto h = AwsHarness::Start({"serve", "--enforce-auth"});
  ASSERT_TRUE(h);
  auto client = [&](const Credentials& c) {
    Ec2ClientOptions o;
    o.region = "us-east-1";
    o.endpoint = h->info()["moto"];
    return std::make_unique<Ec2Client>(o, StaticCredentialsProvider(c), [](double) {});
  };
  RunInstanceRequest req;
  req.image_id = h->info()["image_id"];
  req.instance_type = "t3.micro";

  Ec2Error e;
  auto unknown = client(Keys("AKIDUNKNOWN", "nope"))->DescribeInstances({}, {}, &e);
  EXPECT_EQ(e.kind, Ec2ErrorKind::kAuth);
  EXPECT_EQ(e.code, "AuthFailure");
  EXPECT_EQ(unknown.status().code(), Code::kPermissionDenied);
  EXPECT_NE(unknown.status().message().find("check the AWS credentials"), std::string::npos);

  json keys = h->info()["limited_keys"];
  auto limited = client(Keys(keys[0], keys[1]));
  EXPECT_TRUE(limited->DescribeInstances({}, {}).ok());
  Ec2Error denied;
  auto run = limited->RunInstance(req, &denied);
  EXPECT_EQ(denied.kind, Ec2ErrorKind::kAuth);
  EXPECT_EQ(denied.missing_action, "ec2:RunInstances");
  EXPECT_NE(run.status().message().find("lack the IAM permission ec2:RunInstances"),
            std::string::npos)
      << run.status().message();

  // Signed bodies with spaces and reserved characters pass moto's check,
  // which re-encodes the parameters as botocore does (space as '+').
  json admin = h->info()["admin_keys"];
  req.tags = {{"Name", "trainyard inst x+y~z/w=v:u"}, {"trainyard:server", "s 1"}};
  req.user_data = "#!/bin/bash\necho 'a b+c' >> /tmp/log ~/x\n";
  req.subnet_id = h->info()["subnet_id"];
  req.spot = true;
  auto launched = client(Keys(admin[0], admin[1]))->RunInstance(req);
  ASSERT_TRUE(launched.ok()) << launched.status().ToString();
  EXPECT_EQ(launched->tags.at("Name"), "trainyard inst x+y~z/w=v:u");
  auto found =
      client(Keys(admin[0], admin[1]))->DescribeInstances({}, {{"tag:trainyard:server", "s 1"}});
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  EXPECT_EQ(found->size(), 1u);
}

}  // namespace
}  // namespace yard::aws
