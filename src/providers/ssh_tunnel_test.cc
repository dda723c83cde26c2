// SshTunnel: its ssh command line, and its supervision against a fake ssh
// (a script that says the tunnel is up and holds the session like the real
// remote command), with the SSH steps answered by a FakeCommandRunner.
// tests/e2e/test_aws_tunnel.py runs the real thing.
#include "providers/ssh_tunnel.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>

#include "common/fake_command_runner.h"
#include "common/files.h"
#include "common/temp_dir_testing.h"
#include "common/wait_testing.h"

namespace yard {
namespace {

namespace fs = std::filesystem;

// A tunnel's ssh takes its time to come up (or to fail): generous bounds.
bool WaitUntil(const std::function<bool()>& cond) {
  return test_support::WaitFor(cond, std::chrono::seconds(20), std::chrono::milliseconds(10));
}

class SshTunnelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Like the real session: says it is up, then holds until stdin ends.
    fake_ssh_ = (dir_ / "ssh").string();
    ASSERT_TRUE(
        WriteFileAtomic(fake_ssh_, "#!/bin/sh\necho yard-tunnel-up\nexec cat > /dev/null\n", 0755)
            .ok());
    spec_.host = SshHost{"10.1.2.3", 2222, "ubuntu", "/k.pem", 1};
    spec_.instance_id = "inst-1";
    spec_.server_url = "http://127.0.0.1:8750";
    spec_.remote_port = 47100;
    spec_.log_path = (dir_ / "tunnel.log").string();
    spec_.start_agent = false;
    spec_.ssh_program = fake_ssh_;
  }
  test_support::TempDir tmp_;
  fs::path dir_ = tmp_.path();
  std::string fake_ssh_;
  TunnelSpec spec_;
  FakeCommandRunner runner_{
      [](const CommandSpec&) -> StatusOr<CommandResult> { return Result(0, ""); }};
  SshRemote remote_{SshSettings{}, &runner_};
};

TEST_F(SshTunnelTest, ArgvForwardsTheRemotePortToTheServerWithKeepalives) {
  spec_.ssh_program = "";
  SshTunnel t(&remote_, spec_);
  std::vector<std::string> argv = t.TunnelArgv("127.0.0.1", 8750);
  auto has = [&](const std::string& a) {
    return std::find(argv.begin(), argv.end(), a) != argv.end();
  };
  EXPECT_EQ(argv[0], "ssh");
  EXPECT_TRUE(has("ExitOnForwardFailure=yes"));
  EXPECT_TRUE(has("ServerAliveInterval=5"));
  EXPECT_TRUE(has("ServerAliveCountMax=3"));
  EXPECT_TRUE(has("BatchMode=yes"));
  auto r = std::find(argv.begin(), argv.end(), "-R");
  ASSERT_NE(r, argv.end());
  EXPECT_EQ(*(r + 1), "127.0.0.1:47100:127.0.0.1:8750");
  EXPECT_EQ(argv[argv.size() - 2], "10.1.2.3");
  EXPECT_NE(argv.back().find("tunnel.pid"), std::string::npos);
  EXPECT_NE(t.SessionScript().find("echo yard-tunnel-up"), std::string::npos);
  EXPECT_NE(t.ClearScript().find("= sshd ] && kill"), std::string::npos);
}

TEST_F(SshTunnelTest, AKilledTunnelIsStartedAgainAndStopEndsIt) {
  SshTunnel t(&remote_, spec_);
  t.Start();
  ASSERT_TRUE(WaitUntil([&] { return t.State().up; }));
  pid_t first = t.TunnelPid();
  ASSERT_GT(first, 0);
  // Silence from before the tunnel came up is not counted.
  EXPECT_EQ(t.CountedSilence(3600), 0);
  ::kill(first, SIGKILL);
  ASSERT_TRUE(WaitUntil([&] { return t.State().starts == 2 && t.State().up; }));
  pid_t second = t.TunnelPid();
  EXPECT_NE(second, first);
  // Each start first ends a lingering earlier session on the host.
  int clears = 0;
  for (const CommandSpec& c : runner_.calls())
    clears += c.argv.back().find("tunnel.pid") != std::string::npos;
  EXPECT_EQ(clears, 2);
  t.Stop();
  EXPECT_FALSE(t.State().up);
  EXPECT_NE(::kill(second, 0), 0);  // reaped: gone
  std::string log = *ReadFile(spec_.log_path);
  EXPECT_NE(log.find("starting it again in 500 ms"), std::string::npos) << log;
}

TEST_F(SshTunnelTest, AHostThatNeverLetsUsInIsAFailureWithSshsWords) {
  runner_.SetAnswer([](const CommandSpec&) -> StatusOr<CommandResult> {
    return Result(255, "", "ssh: connect to host 10.1.2.3 port 2222: Connection refused\n");
  });
  spec_.ready_timeout_s = 0.2;
  SshTunnel t(&remote_, spec_);
  t.Start();
  ASSERT_TRUE(WaitUntil([&] { return !t.State().failure.empty(); }));
  EXPECT_NE(t.State().failure.find("Connection refused"), std::string::npos) << t.State().failure;
  EXPECT_NE(t.State().failure.find("did not let us in"), std::string::npos) << t.State().failure;
  EXPECT_EQ(t.State().starts, 0);
}

// `text` as it appears inside a ShellQuote'd argument.
std::string Quoted(const std::string& text) {
  std::string q = ShellQuote(text);
  return q.substr(1, q.size() - 2);
}

TEST_F(SshTunnelTest, ATlsServerIsDialedOverHttpsThroughTheTunnel) {
  std::string binary = (dir_ / "yard").string();
  ASSERT_TRUE(WriteFileAtomic(binary, "a yard build", 0755).ok());
  SshSettings settings;
  settings.yard_binary = binary;
  SshRemote remote(settings, &runner_);
  runner_.SetAnswer([](const CommandSpec& c) -> StatusOr<CommandResult> {
    if (c.argv.back().find("agent --server") != std::string::npos)
      return Result(0, "4242 /root/.cache/trainyard/instances/inst-1\n");
    return Result(0, "");
  });
  spec_.server_url = "https://127.0.0.1:8750";
  spec_.start_agent = true;
  spec_.agent_token = "tok";
  spec_.agent_env = {"YARD_SERVER_FINGERPRINT=AB:CD"};
  SshTunnel t(&remote, spec_);
  t.Start();
  ASSERT_TRUE(WaitUntil([&] { return t.State().agent_started; })) << t.State().failure;
  t.Stop();
  std::string start;
  for (const CommandSpec& c : runner_.calls())
    if (c.argv.back().find("agent --server") != std::string::npos) start = c.argv.back();
  EXPECT_NE(start.find(Quoted("agent --server 'https://127.0.0.1:47100'")), std::string::npos)
      << start;
  EXPECT_NE(start.find(Quoted("export YARD_SERVER_FINGERPRINT='AB:CD'\n")), std::string::npos)
      << start;
}

TEST_F(SshTunnelTest, TheAgentItStartsGetsTheEnvironmentItWasGiven) {
  // The AWS provider's spot instances: YARD_PREEMPTION_WATCH=imds.
  std::string binary = (dir_ / "yard").string();
  ASSERT_TRUE(WriteFileAtomic(binary, "a yard build", 0755).ok());
  SshSettings settings;
  settings.yard_binary = binary;
  SshRemote remote(settings, &runner_);
  runner_.SetAnswer([](const CommandSpec& c) -> StatusOr<CommandResult> {
    if (c.argv.back().find("agent --server") != std::string::npos)
      return Result(0, "4242 /root/.cache/trainyard/instances/inst-1\n");
    return Result(0, "");
  });
  spec_.start_agent = true;
  spec_.agent_token = "tok";
  spec_.agent_env = {"YARD_PREEMPTION_WATCH=imds", "ODD=it's"};
  SshTunnel t(&remote, spec_);
  t.Start();
  ASSERT_TRUE(WaitUntil([&] { return t.State().agent_started; })) << t.State().failure;
  t.Stop();
  std::string start;
  for (const CommandSpec& c : runner_.calls())
    if (c.argv.back().find("agent --server") != std::string::npos) start = c.argv.back();
  ASSERT_FALSE(start.empty());
  size_t watch = start.find(Quoted("export YARD_PREEMPTION_WATCH='imds'\n"));
  EXPECT_NE(watch, std::string::npos) << start;
  EXPECT_LT(watch, start.find("agent --server")) << start;
  EXPECT_NE(start.find(Quoted("export ODD=" + ShellQuote("it's") + "\n")), std::string::npos)
      << start;
}

TEST(SshRemoteTest, StartAgentRefusesAnEnvironmentNameTheShellWouldNotTake) {
  FakeCommandRunner runner(
      [](const CommandSpec&) -> StatusOr<CommandResult> { return Result(0, "1 /d\n"); });
  SshRemote remote(SshSettings{}, &runner);
  SshHost host{"10.1.2.3", 22, "ubuntu", "", 1};
  for (const char* bad : {"NOEQUALS", "=x", "1X=y", "A B=c", "A;rm -rf /=x"}) {
    StatusOr<RemoteAgent> r = remote.StartAgent(host, "http://127.0.0.1:1", "tok", "inst-1", {bad});
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
  }
  EXPECT_TRUE(runner.calls().empty()) << "nothing ran";
  EXPECT_TRUE(remote.StartAgent(host, "http://127.0.0.1:1", "tok", "inst-1", {"A_1=x y"}).ok());
}

TEST(TunnelSettingsTest, DefaultsAndUnknownKeys) {
  StatusOr<TunnelSettings> d = TunnelSettings::FromJson(nullptr);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->user, "ubuntu");
  EXPECT_EQ(d->port, 22);
  StatusOr<TunnelSettings> bad = TunnelSettings::FromJson({{"usr", "x"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("usr"), std::string::npos);
  EXPECT_FALSE(TunnelSettings::FromJson({{"address", "elastic"}}).ok());
}

}  // namespace
}  // namespace yard
