// LocalProvider through a recording AgentSpawner: which cores and devices an
// instance gets, what its agent is started with, and that an instance's
// folder is emptied only once its agent is gone.
#include "providers/local_provider.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>

#include "common/files.h"
#include "common/frames.h"
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

// A LocalProvider under a fresh home whose agents a RecordingSpawner starts.
class LocalProviderTest : public ::testing::Test {
 protected:
  // The provider, with `cores` cores and `gpus` devices.
  LocalProvider& Make(int cores, int gpus) {
    local_ = std::make_unique<LocalProvider>(home.path() + "/instances", cores, gpus, &spawner);
    return *local_;
  }
  // Launches instance "i-a" of one core (Make(2, 0) first).
  InstanceRecord LaunchOne() {
    InstanceRecord a;
    a.id = "i-a";
    EXPECT_TRUE(local_->Launch(Type(1, 0), {}, &a).ok());
    return a;
  }

  TempDir home;
  RecordingSpawner spawner;

 private:
  std::unique_ptr<LocalProvider> local_;
};

TEST_F(LocalProviderTest, EachInstanceGetsItsOwnCoresAndDevicesUntilItEnds) {
  LocalProvider& local = Make(/*cores=*/4, /*gpus=*/2);
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
  EXPECT_EQ(fs::path(ArgAfter(spawner.started[0].args, "--sandbox-hide")),
            fs::path(home.path()).lexically_normal());
  // Bundle chunks are copied from the server's blob store, not fetched.
  EXPECT_EQ(fs::path(ArgAfter(spawner.started[0].args, "--server-blobs")),
            fs::path(home.path()).lexically_normal() / "blobs");
  EXPECT_TRUE(local.IsAlive(a));

  ASSERT_TRUE(local.Terminate(a).ok());
  EXPECT_EQ(local.Available(Type(2, 1)), 1)
      << "the ended instance's cores and device are free again";
  ASSERT_TRUE(local.Launch(Type(2, 1), {}, &c).ok());
  EXPECT_EQ(ArgAfter(spawner.started[2].args, "--cpus"), "0,1");
  EXPECT_EQ(spawner.started[2].env, std::vector<std::string>{"CUDA_VISIBLE_DEVICES=0"});
}

TEST_F(LocalProviderTest, AHostWithoutGpusSetsNoDevices) {
  LocalProvider& local = Make(2, 0);
  InstanceRecord a = LaunchOne();
  ASSERT_EQ(spawner.started.size(), 1u);
  EXPECT_TRUE(spawner.started[0].env.empty());
  EXPECT_EQ(local.Launch(Type(1, 1), {}, &a).code(), Code::kResourceExhausted);
}

TEST_F(LocalProviderTest, TheFolderIsEmptiedOnlyOnceTheAgentIsGoneKeepingItsLogAndSpool) {
  LocalProvider& local = Make(2, 0);
  InstanceRecord a = LaunchOne();
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

class ClearInstanceFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_ / "spool");
    fs::create_directories(dir_ / "jobs" / "job-a-1" / "work");
    std::ofstream(dir_ / "agent.log") << "registered\n";
  }

  // A spool file as the agent writes it (agent/event_spool.h): a header,
  // then `records` records, the first `big` bytes of output.
  fs::path Spool(const std::string& job, int attempt, int records, size_t big = 10) {
    std::string bytes;
    AppendFrame(frame_tag::kJson,
                Json{{"yard_spool", 2}, {"job", job}, {"attempt", attempt}}.dump(), &bytes);
    for (int i = 0; i < records; ++i)
      AppendFrame(frame_tag::kOutput, std::string(i == 0 ? big : 10, 'x'), &bytes);
    fs::path p = dir_ / "spool" / (job + "-" + std::to_string(attempt) + ".spool");
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }

  TempDir tmp_;
  fs::path dir_ = tmp_.path();
};

TEST_F(ClearInstanceFolderTest, RemovesTheSpoolFilesTheServerHoldsWholeAndKeepsTheRest) {
  fs::path delivered = Spool("job-a", 1, 3, 8 << 20);  // a big output, all acknowledged
  fs::path earlier = Spool("job-b", 1, 5);             // an attempt the server moved past
  fs::path unacked = Spool("job-c", 2, 4);             // one record the server lacks
  fs::path unknown = Spool("job-d", 1, 1);
  std::ofstream(dir_ / "spool" / "other.spool") << "not a spool";
  ClearInstanceFolder(dir_.string(), [](const std::string& job, int64_t attempt) -> int64_t {
    if (job == "job-a") return 3;
    if (job == "job-b") return std::numeric_limits<int64_t>::max();
    if (job == "job-c" && attempt == 2) return 3;
    return -1;
  });
  EXPECT_FALSE(fs::exists(delivered));
  EXPECT_FALSE(fs::exists(earlier));
  EXPECT_TRUE(fs::exists(unacked)) << "a record the server lacks keeps its file";
  EXPECT_TRUE(fs::exists(unknown));
  EXPECT_TRUE(fs::exists(dir_ / "spool" / "other.spool"));
  EXPECT_TRUE(fs::exists(dir_ / "agent.log"));
  EXPECT_FALSE(fs::exists(dir_ / "jobs"));
}

TEST_F(ClearInstanceFolderTest, AnEmptiedSpoolFolderGoesAndWithoutAnAnswerTheSpoolStays) {
  fs::path p = Spool("job-a", 1, 2);
  ClearInstanceFolder(dir_.string());  // nobody to ask: kept
  EXPECT_TRUE(fs::exists(p));
  ClearInstanceFolder(dir_.string(), [](const std::string&, int64_t) -> int64_t { return 2; });
  EXPECT_FALSE(fs::exists(dir_ / "spool"));
  EXPECT_TRUE(fs::exists(dir_ / "agent.log"));
}

// The provider asks the server (SetSpoolDelivered) once the agent is gone.
TEST_F(LocalProviderTest, AnEndedInstancesDeliveredSpoolGoesOnceItsAgentIsGone) {
  LocalProvider& local = Make(2, 0);
  local.SetSpoolDelivered(
      [](const std::string& job, int64_t) -> int64_t { return job == "job-a" ? 1 : 0; });
  InstanceRecord a = LaunchOne();
  std::string dir = a.info.value("dir", "");
  fs::create_directories(dir + "/spool");
  std::string bytes;
  AppendFrame(frame_tag::kJson, R"({"attempt":1,"job":"job-a","yard_spool":2})", &bytes);
  AppendFrame(frame_tag::kOutput, std::string(1 << 20, 'x'), &bytes);
  std::ofstream(dir + "/spool/job-a-1.spool", std::ios::binary) << bytes;
  ASSERT_TRUE(local.Terminate(a).ok());
  EXPECT_TRUE(fs::exists(dir + "/spool/job-a-1.spool")) << "kept while the agent may still run";
  spawner.pending_gone();
  EXPECT_FALSE(fs::exists(dir + "/spool"));
}

TEST(SpoolFileInfoTest, CountsTheRecordsAfterTheHeaderAndStopsAtATornEnd) {
  TempDir dir;
  fs::path p = fs::path(dir.path()) / "job-x-3.spool";
  std::string bytes;
  AppendFrame(frame_tag::kJson, R"({"attempt":3,"job":"job-x","yard_spool":2})", &bytes);
  AppendFrame(frame_tag::kJson, R"({"kind":"metric"})", &bytes);
  AppendFrame(frame_tag::kOutput, "line\n", &bytes);
  std::ofstream(p, std::ios::binary) << bytes << "o\x03";  // a torn last frame
  std::optional<SpoolFileInfo> info = ReadSpoolFileInfo(p.string());
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->job, "job-x");
  EXPECT_EQ(info->attempt, 3);
  EXPECT_EQ(info->records, 2);
  std::ofstream(p, std::ios::binary) << "{\"yard_spool\":1}\n";  // version 1: not read here
  EXPECT_FALSE(ReadSpoolFileInfo(p.string()).has_value());
}

}  // namespace
}  // namespace yard
