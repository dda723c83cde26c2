// LocalProvider through a recording AgentSpawner: which cores and devices an
// instance gets, what its agent is started with, and that an instance's
// folder is emptied only once its agent is gone.
#include "providers/local_provider.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "common/files.h"
#include "common/temp_dir_testing.h"

namespace yard {
namespace {

namespace fs = std::filesystem;
using test_support::TempDir;

// Records Start and Stop; a stopped agent's `once_gone` is kept for the test
// to call, as the real spawner does once the process has exited.
class RecordingSpawner : public AgentSpawner {
 public:
  struct Started {
    std::string id, dir;
    std::vector<std::string> args, env;
  };
  StatusOr<int> Start(const AgentLaunchInfo&, const std::string& id, const std::string& dir,
                      const std::vector<std::string>& extra_args,
                      const std::vector<std::string>& extra_env) override {
    YARD_RETURN_IF_ERROR(MakeDirs(dir));
    started.push_back({id, dir, extra_args, extra_env});
    alive.insert(static_cast<int>(started.size()));
    return static_cast<int>(started.size());
  }
  bool Alive(int handle, const std::string&) override { return alive.count(handle) > 0; }
  void Stop(int handle, const std::string&, bool hard, std::function<void()> once_gone) override {
    stopped.push_back({handle, hard});
    pending_gone = std::move(once_gone);
  }
  std::vector<Started> started;
  std::set<int> alive;
  std::vector<std::pair<int, bool>> stopped;
  std::function<void()> pending_gone;
};

MachineType Type(int cpus, int gpus) {
  MachineType t;
  t.name = "local";
  t.provider = "local";
  t.cpus = cpus;
  t.gpus = gpus;
  return t;
}

std::string ArgAfter(const std::vector<std::string>& args, const std::string& flag) {
  auto it = std::find(args.begin(), args.end(), flag);
  return it == args.end() || it + 1 == args.end() ? "" : *(it + 1);
}

TEST(LocalProviderTest, EachInstanceGetsItsOwnCoresAndDevicesUntilItEnds) {
  TempDir home;
  RecordingSpawner spawner;
  LocalProvider local(home.path() + "/instances", /*cores=*/4, /*gpus=*/2, &spawner);
  InstanceRecord a, b, c;
  a.id = "i-a";
  b.id = "i-b";
  c.id = "i-c";
  ASSERT_TRUE(local.Launch(Type(2, 1), {}, &a).ok());
  ASSERT_TRUE(local.Launch(Type(2, 1), {}, &b).ok());
  EXPECT_EQ(local.Available(Type(1, 0)), 0);
  EXPECT_EQ(local.Launch(Type(1, 0), {}, &c).code(), Code::kResourceExhausted);

  ASSERT_EQ(spawner.started.size(), 2u);
  EXPECT_EQ(ArgAfter(spawner.started[0].args, "--cpus"), "0,1");
  EXPECT_EQ(ArgAfter(spawner.started[1].args, "--cpus"), "2,3");
  EXPECT_EQ(spawner.started[0].env, std::vector<std::string>{"CUDA_VISIBLE_DEVICES=0"});
  EXPECT_EQ(spawner.started[1].env, std::vector<std::string>{"CUDA_VISIBLE_DEVICES=1"});
  // Jobs are confined: the whole of the server's home is hidden from them.
  EXPECT_EQ(fs::path(ArgAfter(spawner.started[0].args, "--sandbox-hide")), fs::path(home.path()).lexically_normal());
  EXPECT_TRUE(local.IsAlive(a));

  ASSERT_TRUE(local.Terminate(a).ok());
  EXPECT_EQ(local.Available(Type(2, 1)), 1) << "the ended instance's cores and device are free again";
  ASSERT_TRUE(local.Launch(Type(2, 1), {}, &c).ok());
  EXPECT_EQ(ArgAfter(spawner.started[2].args, "--cpus"), "0,1");
  EXPECT_EQ(spawner.started[2].env, std::vector<std::string>{"CUDA_VISIBLE_DEVICES=0"});
}

TEST(LocalProviderTest, AHostWithoutGpusSetsNoDevices) {
  TempDir home;
  RecordingSpawner spawner;
  LocalProvider local(home.path() + "/instances", 2, 0, &spawner);
  InstanceRecord a;
  a.id = "i-a";
  ASSERT_TRUE(local.Launch(Type(1, 0), {}, &a).ok());
  EXPECT_TRUE(spawner.started[0].env.empty());
  EXPECT_EQ(local.Launch(Type(1, 1), {}, &a).code(), Code::kResourceExhausted);
}

TEST(LocalProviderTest, TheFolderIsEmptiedOnlyOnceTheAgentIsGoneKeepingItsLogAndSpool) {
  TempDir home;
  RecordingSpawner spawner;
  LocalProvider local(home.path() + "/instances", 2, 0, &spawner);
  InstanceRecord a;
  a.id = "i-a";
  ASSERT_TRUE(local.Launch(Type(1, 0), {}, &a).ok());
  std::string dir = a.info.value("dir", "");
  ASSERT_EQ(dir, home.path() + "/instances/i-a");
  for (const char* sub : {"jobs", "spool", "chunks"}) fs::create_directories(dir + "/" + sub);
  std::ofstream(dir + "/agent.log") << "log\n";

  ASSERT_TRUE(local.Terminate(a).ok());
  ASSERT_EQ(spawner.stopped.size(), 1u);
  EXPECT_FALSE(spawner.stopped[0].second) << "a graceful stop: the agent ends its job first";
  EXPECT_TRUE(fs::exists(dir + "/jobs")) << "nothing is removed while the agent may still run";
  ASSERT_TRUE(spawner.pending_gone);
  spawner.pending_gone();
  EXPECT_FALSE(fs::exists(dir + "/jobs"));
  EXPECT_FALSE(fs::exists(dir + "/chunks"));
  EXPECT_TRUE(fs::exists(dir + "/agent.log"));
  EXPECT_TRUE(fs::exists(dir + "/spool"));
}

}  // namespace
}  // namespace yard
