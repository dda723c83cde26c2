// The ssh provider against a scripted ssh (FakeCommandRunner): probing,
// copying only another build, starting with the token on stdin, failed
// attempts, and agents that die before registering.
#include "providers/ssh_provider.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <limits>
#include <thread>

#include "common/fake_command_runner.h"
#include "common/files.h"
#include "common/hashing.h"
#include "common/temp_dir_testing.h"

namespace yard {
namespace {

namespace fs = std::filesystem;

// What the fake host does with each script, told apart by what it runs.
enum class Step { kProbe, kCopy, kStart, kConfirm, kKill, kOther };

// The script of an ssh call (its last argument is "sh -c 'SCRIPT'").
std::string ScriptOf(const CommandSpec& s) {
  std::string quoted = s.argv.back().substr(std::string("sh -c ").size());
  std::string out;
  for (size_t i = 1; i + 1 < quoted.size(); ++i) {
    if (quoted.compare(i, 4, "'\\''") == 0) {
      out += '\'';
      i += 3;
    } else {
      out += quoted[i];
    }
  }
  return out;
}

Step StepOf(const CommandSpec& s) {
  std::string script = ScriptOf(s);
  if (script.find("sha256sum \"$D/bin/yard\"") != std::string::npos) return Step::kProbe;
  if (script.find("cat > \"$T\"") != std::string::npos) return Step::kCopy;
  if (script.find("setsid") != std::string::npos) return Step::kStart;
  if (script.find("registered") != std::string::npos) return Step::kConfirm;
  if (script.find("kill -TERM") != std::string::npos) return Step::kKill;
  return Step::kOther;
}

class SshProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    binary_ = "pretend this is yard";
    ASSERT_TRUE(WriteFileAtomic((dir_ / "yard").string(), binary_, 0755).ok());
    settings_.yard_binary = (dir_ / "yard").string();
    settings_.user = "root";
    hosts_["ssh-a"] = {SshHost{"10.0.0.2", 22, "root", "/k", 1}};
  }
  void TearDown() override { provider_.reset(); }
  void Make(FakeCommandRunner::Answer answer) {
    auto runner = std::make_unique<FakeCommandRunner>(std::move(answer));
    runner_ = runner.get();
    provider_ = std::make_unique<SshProvider>(settings_, hosts_, std::move(runner));
  }
  // A host with `remote_hash` installed, whose agent prints `confirm`.
  FakeCommandRunner::Answer Host(std::string remote_hash, std::string confirm = "starting\n") {
    return [remote_hash, confirm](const CommandSpec& s) -> StatusOr<CommandResult> {
      switch (StepOf(s)) {
        case Step::kProbe:
          return Result(0, remote_hash + "  /root/.cache/trainyard/bin/yard\n");
        case Step::kStart:
          return Result(0, "4242 /root/.cache/trainyard/instances/inst-1\n");
        case Step::kConfirm:
          return Result(0, confirm);
        default:
          return Result(0, "");
      }
    };
  }
  Status Launch(InstanceRecord* inst) {
    inst->id = "inst-1";
    return provider_->Launch(type_, agent_, inst);
  }

  test_support::TempDir tmp_;
  fs::path dir_ = tmp_.path();
  std::string binary_;
  SshSettings settings_;
  std::map<std::string, std::vector<SshHost>> hosts_;
  AgentLaunchInfo agent_{"http://10.0.0.1:8080", "", "secret-token", "/unused", ""};
  MachineType type_ = [] {
    MachineType t;
    t.name = "ssh-a";
    t.provider = "ssh";
    return t;
  }();
  FakeCommandRunner* runner_ = nullptr;
  std::unique_ptr<SshProvider> provider_;
};

TEST_F(SshProviderTest, CopiesAnotherBuildAndStartsTheAgentWithItsTokenOnStdin) {
  Make(Host("none"));
  InstanceRecord inst;
  ASSERT_TRUE(Launch(&inst).ok());
  auto calls = runner_->calls();
  ASSERT_GE(calls.size(), 3u);
  EXPECT_EQ(StepOf(calls[0]), Step::kProbe);
  EXPECT_EQ(StepOf(calls[1]), Step::kCopy);
  EXPECT_EQ(calls[1].input, binary_);
  EXPECT_NE(ScriptOf(calls[1]).find(Sha256Hex(binary_)), std::string::npos);  // verified on arrival
  EXPECT_EQ(StepOf(calls[2]), Step::kStart);
  EXPECT_EQ(calls[2].input, "secret-token\n");
  for (const auto& c : calls)
    for (const auto& a : c.argv) EXPECT_EQ(a.find("secret-token"), std::string::npos) << a;
  const auto& argv = calls[2].argv;
  for (const char* want : {"BatchMode=yes", "-i", "/k", "-l", "root", "10.0.0.2"})
    EXPECT_NE(std::find(argv.begin(), argv.end(), want), argv.end()) << want;
  EXPECT_NE(ScriptOf(calls[2]).find("--server 'http://10.0.0.1:8080' --instance 'inst-1'"),
            std::string::npos);
  EXPECT_EQ(inst.info["pid"], "4242");
  EXPECT_EQ(inst.info["host"], "root@10.0.0.2:22");
  EXPECT_EQ(provider_->Available(type_), 0);  // one slot, taken
  EXPECT_TRUE(provider_->IsAlive(inst));
}

TEST_F(SshProviderTest, TheSameBuildIsNotCopiedAgain) {
  Make(Host(Sha256Hex(binary_)));
  InstanceRecord inst;
  ASSERT_TRUE(Launch(&inst).ok());
  auto calls = runner_->calls();
  EXPECT_EQ(StepOf(calls[0]), Step::kProbe);
  EXPECT_EQ(StepOf(calls[1]), Step::kStart);
}

TEST_F(SshProviderTest, TheSmallShimBesideYardIsCopiedToo) {
  std::string shim = "pretend this is yard-shim";
  ASSERT_TRUE(WriteFileAtomic((dir_ / "yard-shim").string(), shim, 0755).ok());
  Make(Host(Sha256Hex(binary_)));  // yard is there already; yard-shim is not
  InstanceRecord inst;
  ASSERT_TRUE(Launch(&inst).ok());
  bool copied = false;
  for (const auto& c : runner_->calls()) {
    if (StepOf(c) != Step::kCopy) continue;
    EXPECT_EQ(c.input, shim);
    EXPECT_NE(ScriptOf(c).find("\"$D/bin/yard-shim\""), std::string::npos);
    EXPECT_NE(ScriptOf(c).find(Sha256Hex(shim)), std::string::npos);  // verified on arrival
    copied = true;
  }
  EXPECT_TRUE(copied);
}

TEST_F(SshProviderTest, AnUnreachableHostIsAFailedAttemptThatFreesIt) {
  Make([](const CommandSpec&) -> StatusOr<CommandResult> {
    return Result(255, "", "ssh: connect to host 10.0.0.2 port 22: Connection refused\r\n");
  });
  InstanceRecord inst;
  Status s = Launch(&inst);
  EXPECT_NE(s.code(), Code::kResourceExhausted);  // the controller falls back at once
  EXPECT_EQ(
      s.message(),
      "cannot reach root@10.0.0.2:22: ssh: connect to host 10.0.0.2 port 22: Connection refused");
  EXPECT_EQ(provider_->Available(type_), 1);
  EXPECT_FALSE(provider_->IsAlive(inst));
}

TEST_F(SshProviderTest, ALoopbackServerIsRefusedForARemoteHost) {
  Make(Host("none"));
  agent_.server_url = "http://127.0.0.1:8080";
  InstanceRecord inst;
  Status s = Launch(&inst);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("providers.ssh.server_url"), std::string::npos);
  EXPECT_TRUE(runner_->calls().empty());
}

TEST_F(SshProviderTest, AnAgentThatDiesBeforeRegisteringIsReportedWithItsLog) {
  Make(Host("none", "exited\nyard: agent inst-1: registering: unauthenticated: bad token\n"));
  InstanceRecord inst;
  ASSERT_TRUE(Launch(&inst).ok());
  std::vector<Interruption> taken;
  for (int i = 0; i < 100 && taken.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    taken = provider_->TakeInterruptions();
  }
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].reason,
            "the agent on root@10.0.0.2:22 exited before it registered: "
            "yard: agent inst-1: registering: unauthenticated: bad token");
  EXPECT_EQ(provider_->Available(type_), 1);
}

TEST_F(SshProviderTest, TerminateSignalsOnlyOurAgentOffTheCallersThread) {
  Make(Host("none", "registered\n"));
  InstanceRecord inst;
  ASSERT_TRUE(Launch(&inst).ok());
  ASSERT_TRUE(provider_->Terminate(inst).ok());
  EXPECT_EQ(provider_->Available(type_), 1);
  provider_->Drain();
  std::vector<CommandSpec> kills;
  for (const auto& c : runner_->calls())
    if (StepOf(c) == Step::kKill) kills.push_back(c);
  ASSERT_EQ(kills.size(), 1u);
  EXPECT_NE(ScriptOf(kills[0]).find("grep -q 'inst-1' /proc/4242/cmdline"), std::string::npos);
}

// An ended instance's spool files whose records the server holds are removed
// from the host, as the local provider does (since 45c71bf); one with a
// record the server lacks stays. Before, spool/ stayed whatever it held.
TEST_F(SshProviderTest, TerminateRemovesTheSpoolFilesTheServerHolds) {
  std::string report = R"({"file": "job-a-1.spool", "job": "job-a", "attempt": 1, "records": 7})"
                       "\n"
                       R"({"file": "job-b-2.spool", "job": "job-b", "attempt": 2, "records": 9})"
                       "\n"
                       R"({"file": "job-c-1.spool", "job": "job-c", "attempt": 1, "records": 3})"
                       "\n"
                       "noise from a login shell\n";
  FakeCommandRunner::Answer host = Host("none", "registered\n");
  Make([host, report](const CommandSpec& s) -> StatusOr<CommandResult> {
    if (StepOf(s) == Step::kKill) return Result(0, report);
    return host(s);
  });
  provider_->SetSpoolDelivered([](const std::string& job, int64_t attempt) -> int64_t {
    if (job == "job-a") return 7;                                    // all of it
    if (job == "job-b") return 8;                                    // one record short: kept
    return attempt == 1 ? std::numeric_limits<int64_t>::max() : -1;  // job-c: moved past it
  });
  InstanceRecord inst;
  ASSERT_TRUE(Launch(&inst).ok());
  ASSERT_TRUE(provider_->Terminate(inst).ok());
  provider_->Drain();
  std::vector<std::string> after;  // the scripts after the kill
  bool killed = false;
  for (const auto& c : runner_->calls()) {
    if (killed) after.push_back(ScriptOf(c));
    killed |= StepOf(c) == Step::kKill;
  }
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0],
            "cd '/root/.cache/trainyard/instances/inst-1/spool' 2>/dev/null || exit 0\n"
            "rm -f -- 'job-a-1.spool'\nrm -f -- 'job-c-1.spool'\n"
            "cd / && rmdir '/root/.cache/trainyard/instances/inst-1/spool' 2>/dev/null; true");
}

TEST(SshRemoteTest, TheTerminateScriptAsksTheHostsOwnYardForTheSpoolReport) {
  std::string script = SshRemote::TerminateScript("inst-1", "4242", "/r/instances/inst-1");
  EXPECT_NE(
      script.find(
          "'/r/bin/yard' agent --instance 'inst-1' --dir '/r/instances/inst-1' --spool-report"),
      std::string::npos)
      << script;
  EXPECT_EQ(SshRemote::RemoteYardOf("/r/instances/inst-1/"), "/r/bin/yard");
  EXPECT_EQ(SshRemote::RemoveSpoolFilesScript("/r/instances/i", {"../x", "a/b", "ok.spool"}),
            "cd '/r/instances/i/spool' 2>/dev/null || exit 0\nrm -f -- 'ok.spool'\n"
            "cd / && rmdir '/r/instances/i/spool' 2>/dev/null; true")
      << "only plain names in spool/";
}

TEST(SshHostsTest, HostsComeFromTypeOptionsWithDefaultsFromTheSettings) {
  SshSettings s;
  s.user = "ops";
  s.key = "/keys/id";
  Catalog c = *Catalog::FromJson(nlohmann::json::parse(R"({"version": 1, "types": [
      {"name": "a", "provider": "ssh", "options": {"hosts": ["me@10.0.0.5:2222", {"address": "h2", "slots": 2}]}},
      {"name": "b", "provider": "ssh", "options": {"hosts": [{"adress": "typo"}]}}]})"));
  auto hosts = SshHostsByType(c, s);
  ASSERT_FALSE(hosts.ok());
  EXPECT_NE(hosts.status().message().find("unknown key \"adress\""), std::string::npos);
  c = *Catalog::FromJson(nlohmann::json::parse(R"({"version": 1, "types": [
      {"name": "a", "provider": "ssh", "options": {"hosts": ["me@10.0.0.5:2222", {"address": "h2", "slots": 2}]}}]})"));
  hosts = SshHostsByType(c, s);
  ASSERT_TRUE(hosts.ok()) << hosts.status().message();
  const auto& a = (*hosts)["a"];
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].Name(), "me@10.0.0.5:2222");
  EXPECT_EQ(a[0].key, "/keys/id");
  EXPECT_EQ(a[1].Name(), "ops@h2:22");
  EXPECT_EQ(a[1].slots, 2);
}

}  // namespace
}  // namespace yard
