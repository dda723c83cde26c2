#include "common/process.h"

#include <signal.h>
#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

#include "common/temp_dir_testing.h"

using yard::test_support::TempDir;

namespace yard {
namespace {

// The lost-at-provisioning race: a spawned agent was checked by
// ProcessAlive(pid, marker) before its exec, found to have the server's
// command line, and declared gone. The pid must not be returned before the
// exec.
TEST(SpawnDetachedTest, ProcessIsAliveWithItsMarkerAsSoonAsItsPidIsReturned) {
  TempDir dir;
  for (int i = 0; i < 50; ++i) {
    std::string marker = "spawn-marker-" + std::to_string(i);
    // sh -c's next argument is its $0: the marker is in its command line.
    StatusOr<int> pid = SpawnDetached({"/bin/sh", "-c", "sleep 30", marker}, {}, dir.path() + "/log");
    ASSERT_TRUE(pid.ok()) << pid.status().ToString();
    EXPECT_TRUE(ProcessAlive(*pid, marker)) << "spawn " << i << " looked dead right after it started";
    ::kill(*pid, SIGKILL);
  }
}

TEST(SpawnDetachedTest, AMissingProgramIsAnErrorNamingIt) {
  TempDir dir;
  StatusOr<int> pid = SpawnDetached({"/nonexistent/agent", "x"}, {}, dir.path() + "/log");
  ASSERT_FALSE(pid.ok());
  EXPECT_NE(pid.status().message().find("/nonexistent/agent"), std::string::npos) << pid.status().ToString();
  EXPECT_NE(pid.status().message().find("No such file"), std::string::npos) << pid.status().ToString();
}

TEST(SecretEnvTest, TokensKeysAndCloudCredentialsAreSecretSettingsAreNot) {
  for (const char* secret : {"YARD_TOKEN=x", "YARD_AGENT_TOKEN", "AWS_SECRET_ACCESS_KEY=k", "AWS_ACCESS_KEY_ID",
                             "AWS_SESSION_TOKEN", "aws_profile", "GITHUB_TOKEN", "DB_PASSWORD", "MY_SECRET",
                             "OPENAI_API_KEY", "GOOGLE_APPLICATION_CREDENTIALS"})
    EXPECT_TRUE(IsSecretEnvName(secret)) << secret;
  for (const char* setting : {"PATH=/usr/bin", "HOME", "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9",
                              "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CA_BUNDLE", "KEYBOARD", "CUDA_VISIBLE_DEVICES"})
    EXPECT_FALSE(IsSecretEnvName(setting)) << setting;
}

}  // namespace
}  // namespace yard
