// The credentials chain, one step at a time: environment, profiles in
// temporary credentials/config files, the instance role from
// ec2-metadata-mock and from FakeImds (refresh before expiry), and the error
// that names every place looked at. Also Ec2Endpoint's order.
#include "aws/credentials.h"

#include <gtest/gtest.h>

#include <ctime>
#include <fstream>

#include "aws/fake_imds_testing.h"
#include "aws/harness_testing.h"
#include "common/temp_dir_testing.h"

namespace yard::aws {
namespace {

using test_support::TempDir;

void Write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::string Iso8601(double t) {
  std::time_t secs = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// An environment with no AWS settings and HOME in `dir` (no ~/.aws there).
Environment Empty(const TempDir& dir) {
  return {{"HOME", dir.path()}, {"AWS_EC2_METADATA_DISABLED", "true"}};
}

TEST(Credentials, EnvironmentComesFirst) {
  TempDir dir;
  Environment env = Empty(dir);
  env["AWS_ACCESS_KEY_ID"] = "AKIDENV";
  env["AWS_SECRET_ACCESS_KEY"] = "secret-env";
  env["AWS_SESSION_TOKEN"] = "token-env";
  env["AWS_PROFILE"] = "nowhere";  // not looked at: the environment wins
  auto c = DefaultCredentialsChain(env)->Get();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->access_key_id, "AKIDENV");
  EXPECT_EQ(c->secret_access_key, "secret-env");
  EXPECT_EQ(c->session_token, "token-env");
  EXPECT_EQ(c->source, "environment");
}

TEST(Credentials, HalfAKeyInTheEnvironmentIsAnError) {
  TempDir dir;
  Environment env = Empty(dir);
  env["AWS_ACCESS_KEY_ID"] = "AKIDENV";
  auto c = DefaultCredentialsChain(env)->Get();
  EXPECT_EQ(c.status().code(), Code::kUnauthenticated);
  EXPECT_NE(c.status().message().find("AWS_SECRET_ACCESS_KEY is not"), std::string::npos);
}

TEST(Credentials, DefaultProfileFromHomeAndNamedProfilesFromBothFiles) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() + "/.aws");
  Write(dir.path() + "/.aws/credentials",
        "# comment\n[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s-default\n"
        "\n[work]\naws_access_key_id=AKIDWORK\naws_secret_access_key=s-work\naws_session_token=t-"
        "work\n");
  Write(dir.path() + "/.aws/config",
        "[default]\nregion = us-east-1\n[profile cfg]\naws_access_key_id = AKIDCFG\n"
        "aws_secret_access_key = s-cfg\ns3 =\n  max_concurrent_requests = 20\n");
  Environment env = Empty(dir);
  auto def = DefaultCredentialsChain(env)->Get();
  ASSERT_TRUE(def.ok()) << def.status().ToString();
  EXPECT_EQ(def->access_key_id, "AKIDDEFAULT");
  EXPECT_EQ(def->source, "profile default");

  env["AWS_PROFILE"] = "work";
  auto work = DefaultCredentialsChain(env)->Get();
  ASSERT_TRUE(work.ok()) << work.status().ToString();
  EXPECT_EQ(work->access_key_id, "AKIDWORK");
  EXPECT_EQ(work->session_token, "t-work");

  env["AWS_PROFILE"] = "cfg";
  auto cfg = DefaultCredentialsChain(env)->Get();
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->access_key_id, "AKIDCFG");
  EXPECT_EQ(cfg->source, "profile cfg");
}

TEST(Credentials, FileLocationsFromTheEnvironmentAndRotatedKeys) {
  TempDir dir;
  Environment env = Empty(dir);
  env["AWS_SHARED_CREDENTIALS_FILE"] = dir.path() + "/creds";
  env["AWS_CONFIG_FILE"] = dir.path() + "/conf";
  Write(dir.path() + "/creds",
        "[default]\naws_access_key_id = AKID1\naws_secret_access_key = s1\n");
  auto chain = DefaultCredentialsChain(env);
  EXPECT_EQ(chain->Get()->access_key_id, "AKID1");
  Write(dir.path() + "/creds",
        "[default]\naws_access_key_id = AKID2\naws_secret_access_key = s2\n");
  EXPECT_EQ(chain->Get()->access_key_id, "AKID2");  // files are read again
}

TEST(Credentials, NamedProfileThatNoFileHasFailsNamingTheFiles) {
  TempDir dir;
  Environment env = Empty(dir);
  env["AWS_PROFILE"] = "ghost";
  Write(dir.path() + "/creds", "[default]\naws_access_key_id = A\naws_secret_access_key = s\n");
  env["AWS_SHARED_CREDENTIALS_FILE"] = dir.path() + "/creds";
  auto c = DefaultCredentialsChain(env)->Get();
  EXPECT_EQ(c.status().code(), Code::kUnauthenticated);
  const std::string& m = c.status().message();
  EXPECT_NE(m.find("AWS_PROFILE is \"ghost\""), std::string::npos) << m;
  EXPECT_NE(m.find(dir.path() + "/creds (no such section)"), std::string::npos) << m;
  EXPECT_NE(m.find(dir.path() + "/.aws/config as [profile ghost] (no such file)"),
            std::string::npos)
      << m;
}

TEST(Credentials, RoleAssumingProfileIsRefusedClearly) {
  TempDir dir;
  Environment env = Empty(dir);
  env["AWS_PROFILE"] = "admin";
  env["AWS_CONFIG_FILE"] = dir.path() + "/conf";
  Write(dir.path() + "/conf",
        "[profile admin]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = default\n");
  auto c = DefaultCredentialsChain(env)->Get();
  EXPECT_EQ(c.status().code(), Code::kUnauthenticated);
  EXPECT_NE(c.status().message().find("uses role_arn"), std::string::npos) << c.status().message();
}

TEST(Credentials, NothingAnywhereNamesEveryPlace) {
  TempDir dir;
  Environment env = Empty(dir);
  auto c = DefaultCredentialsChain(env)->Get();
  EXPECT_EQ(c.status().code(), Code::kUnauthenticated);
  const std::string& m = c.status().message();
  EXPECT_NE(m.find("environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set)"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("profile \"default\" in " + dir.path() + "/.aws/credentials (no such file)"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("instance role (skipped: AWS_EC2_METADATA_DISABLED=true)"), std::string::npos)
      << m;

  env.erase("AWS_EC2_METADATA_DISABLED");
  env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = "http://127.0.0.1:1";
  auto c2 = DefaultCredentialsChain(env)->Get();
  EXPECT_EQ(c2.status().code(), Code::kUnauthenticated);
  EXPECT_NE(c2.status().message().find("instance role through IMDSv2 at http://127.0.0.1:1"),
            std::string::npos)
      << c2.status().message();
}

TEST(Credentials, InstanceRoleFromTheMetadataMock) {
  if (std::string r = test_support::AwsHarness::SkipReason({"metadata-mock"}); !r.empty())
    GTEST_SKIP() << r;
  double expires = std::time(nullptr) + 3600.0;
  nlohmann::json config = {{"metadata",
                            {{"values",
                              {{"iam-security-credentials",
                                {{"Code", "Success"},
                                 {"Type", "AWS-HMAC"},
                                 {"AccessKeyId", "ASIAMOCK"},
                                 {"SecretAccessKey", "mock-secret"},
                                 {"Token", "mock-token"},
                                 {"LastUpdated", Iso8601(std::time(nullptr))},
                                 {"Expiration", Iso8601(expires)}}}}}}}};
  auto mock = test_support::AwsHarness::Start(
      {"metadata-mock", "--imdsv2-only", "--config-json", config.dump()});
  ASSERT_TRUE(mock);
  TempDir dir;
  FakeClock clock(std::time(nullptr));
  Environment env{{"HOME", dir.path()},
                  {"AWS_EC2_METADATA_SERVICE_ENDPOINT", mock->info()["imds"]}};
  auto chain = DefaultCredentialsChain(env, &clock);
  auto c = chain->Get();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->access_key_id, "ASIAMOCK");
  EXPECT_EQ(c->session_token, "mock-token");
  EXPECT_EQ(c->source, "instance role baskinc-role");
  EXPECT_DOUBLE_EQ(c->expires_at, expires);
  mock.reset();  // the service goes away: cached credentials still serve
  EXPECT_EQ(chain->Get()->access_key_id, "ASIAMOCK");
  clock.Set(expires - 120);  // refresh due, fails, still valid: kept
  EXPECT_EQ(chain->Get()->access_key_id, "ASIAMOCK");
  clock.Set(expires + 1);  // expired and no service: an error naming IMDS
  auto gone = chain->Get();
  EXPECT_EQ(gone.status().code(), Code::kUnauthenticated);
  EXPECT_NE(gone.status().message().find("instance role through IMDSv2"), std::string::npos);
}

TEST(Credentials, RoleCredentialsRefreshFiveMinutesBeforeExpiry) {
  test_support::FakeImds fake;
  FakeClock clock(1'700'000'000);
  fake.SetExpiration(Iso8601(1'700'000'000 + 3600));
  TempDir dir;
  auto chain = DefaultCredentialsChain(
      {{"HOME", dir.path()}, {"AWS_EC2_METADATA_SERVICE_ENDPOINT", fake.url()}}, &clock);
  EXPECT_EQ(chain->Get()->access_key_id, "ASIA1");
  clock.Advance(3600 - 301);
  EXPECT_EQ(chain->Get()->access_key_id, "ASIA1");  // cached
  EXPECT_EQ(fake.credential_fetches(), 1);
  clock.Advance(2);  // within 5 minutes of expiry
  EXPECT_EQ(chain->Get()->access_key_id, "ASIA2");
  EXPECT_EQ(fake.credential_fetches(), 2);
}

TEST(Credentials, StaticProvider) {
  Credentials c;
  c.access_key_id = "A";
  EXPECT_EQ(StaticCredentialsProvider(c)->Get()->access_key_id, "A");
}

TEST(Ec2Endpoint, ConfiguredThenEnvironmentThenAws) {
  Environment env{{"AWS_ENDPOINT_URL", "http://generic"},
                  {"AWS_ENDPOINT_URL_EC2", "http://ec2-specific"}};
  EXPECT_EQ(Ec2Endpoint("eu-west-1", "http://configured", env), "http://configured");
  EXPECT_EQ(Ec2Endpoint("eu-west-1", "", env), "http://ec2-specific");
  env.erase("AWS_ENDPOINT_URL_EC2");
  EXPECT_EQ(Ec2Endpoint("eu-west-1", "", env), "http://generic");
  EXPECT_EQ(Ec2Endpoint("eu-west-1", "", {}), "https://ec2.eu-west-1.amazonaws.com");
}

}  // namespace
}  // namespace yard::aws
