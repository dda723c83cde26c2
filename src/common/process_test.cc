#include "common/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
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
    StatusOr<int> pid =
        SpawnDetached({"/bin/sh", "-c", "sleep 30", marker}, {}, dir.path() + "/log");
    ASSERT_TRUE(pid.ok()) << pid.status().ToString();
    EXPECT_TRUE(ProcessAlive(*pid, marker))
        << "spawn " << i << " looked dead right after it started";
    ::kill(*pid, SIGKILL);
  }
}

TEST(SpawnDetachedTest, AMissingProgramIsAnErrorNamingIt) {
  TempDir dir;
  StatusOr<int> pid = SpawnDetached({"/nonexistent/agent", "x"}, {}, dir.path() + "/log");
  ASSERT_FALSE(pid.ok());
  EXPECT_NE(pid.status().message().find("/nonexistent/agent"), std::string::npos)
      << pid.status().ToString();
  EXPECT_NE(pid.status().message().find("No such file"), std::string::npos)
      << pid.status().ToString();
}

// Runs `spec` with its stdout on a pipe; returns what it printed.
std::string OutputOf(ChildSpec spec, int* exit_code) {
  int out[2];
  EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
  spec.fds.insert(spec.fds.begin(), {out[1], 1});
  pid_t pid = -1;
  int rc = SpawnChild(spec, &pid);
  ::close(out[1]);
  EXPECT_EQ(rc, 0) << std::strerror(rc);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof(buf))) > 0;)
    text.append(buf, static_cast<size_t>(n));
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return text;
}

TEST(SpawnChildTest, GivesTheChildItsEnvironmentFolderAndDescriptors) {
  TempDir dir;
  ChildSpec spec;
  spec.argv = {"sh", "-c", "echo \"$GREETING\" $(pwd); cat; echo end"};
  spec.env = std::vector<std::string>{"GREETING=hello", "PATH=/usr/bin:/bin"};
  spec.cwd = dir.path();
  spec.fds = {{-1, 0}};  // stdin from /dev/null: cat ends at once
  int code = -1;
  std::string folder = std::filesystem::canonical(dir.path()).string();
  EXPECT_EQ(OutputOf(spec, &code), "hello " + folder + "\nend\n");
  EXPECT_EQ(code, 0);
}

TEST(SpawnChildTest, ResetsIgnoredSignalsAndCanStartANewProcessGroupWithoutOurDescriptors) {
  // This process ignores SIGTERM and holds a descriptor without CLOEXEC;
  // the child must neither inherit the one nor (with close_other_fds) see
  // the other.
  struct sigaction ignore = {}, old = {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGTERM, &ignore, &old);
  int leaked = ::open("/dev/null", O_RDONLY);
  ChildSpec spec;
  spec.argv = {"sh", "-c",
               "test -e /proc/self/fd/" + std::to_string(leaked) +
                   " && echo open; ps -o pgid= -p $$ | tr -d ' '; kill -TERM $$; echo alive"};
  spec.close_other_fds = true;
  spec.new_process_group = true;
  int code = -1;
  std::string out = OutputOf(spec, &code);
  ::sigaction(SIGTERM, &old, nullptr);
  ::close(leaked);
  EXPECT_EQ(code, 128 + SIGTERM) << out;
  EXPECT_EQ(out.find("open"), std::string::npos) << out;
  EXPECT_EQ(out.find("alive"), std::string::npos) << out;
  EXPECT_NE(out, std::to_string(::getpgrp()) + "\n") << "the child stayed in our process group";
}

TEST(SpawnChildTest, AMissingProgramIsItsErrno) {
  ChildSpec spec;
  spec.argv = {"/nonexistent/program"};
  pid_t pid = -1;
  EXPECT_EQ(SpawnChild(spec, &pid), ENOENT);
  spec.argv.clear();
  EXPECT_EQ(SpawnChild(spec, &pid), EINVAL);
}

TEST(SecretEnvTest, TokensKeysAndCloudCredentialsAreSecretSettingsAreNot) {
  for (const char* secret :
       {"YARD_TOKEN=x", "YARD_AGENT_TOKEN", "AWS_SECRET_ACCESS_KEY=k", "AWS_ACCESS_KEY_ID",
        "AWS_SESSION_TOKEN", "aws_profile", "GITHUB_TOKEN", "DB_PASSWORD", "MY_SECRET",
        "OPENAI_API_KEY", "GOOGLE_APPLICATION_CREDENTIALS"})
    EXPECT_TRUE(IsSecretEnvName(secret)) << secret;
  for (const char* setting :
       {"PATH=/usr/bin", "HOME", "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9",
        "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CA_BUNDLE", "KEYBOARD", "CUDA_VISIBLE_DEVICES"})
    EXPECT_FALSE(IsSecretEnvName(setting)) << setting;
}

}  // namespace
}  // namespace yard
