#include "agent/multi_node.h"

#include <gtest/gtest.h>

#include "common/fake_command_runner.h"

namespace yard {
namespace {

TEST(RankLabelerTest, RelabelsSrunLabelsAcrossChunks) {
  RankLabeler l;
  std::string out = l.Add("0: hello\n1", false);
  out += l.Add(": wor", false);
  out += l.Add("ld\n 12: x\nsrun: error: n2: task 1: Exited\n", false);
  out += l.Add("3: partial", true);
  EXPECT_EQ(out,
            "[rank 0] hello\n[rank 1] world\n[rank 12] x\nsrun: error: n2: task 1: Exited\n"
            "[rank 3] partial");
}

TEST(RankLabelerTest, LeavesUnlabelledLinesAndFlushesAHeldStartAtTheEnd) {
  RankLabeler l;
  EXPECT_EQ(l.Add("42\n", false), "42\n");
  EXPECT_EQ(l.Add("3:x\n", false), "3:x\n");
  EXPECT_EQ(l.Add("\n7", false), "\n");
  EXPECT_EQ(l.Add("", true), "7");
}

class MultiNodeTest : public ::testing::Test {
 protected:
  FakeCommandRunner runner_{[](const CommandSpec& s) -> StatusOr<CommandResult> {
    if (s.argv[1] == "show" && s.argv[2] == "hostnames") return Result(0, "n3\nn4\nn5\n");
    return Result(0,
                  "NodeName=n4 Arch=x86_64 NodeAddr=10.1.0.4 NodeHostName=n4\n"
                  "NodeName=n3 Arch=x86_64 NodeAddr=10.1.0.3 NodeHostName=n3\n");
  }};
  Assignment a_ = [] {
    Assignment a;
    a.job = "job-1";
    a.attempt = 1;
    a.command = {"python3", "train.py"};
    a.nodes = 2;
    return a;
  }();
  JobPaths paths_ = JobPaths::For("/w", "job-1", 1);
};

TEST_F(MultiNodeTest, RunsTheCommandThroughSrunWithTheRankVariables) {
  EnvMap env = {{"SLURM_JOB_NODELIST", "n[3-5]"}, {"SLURM_JOB_NUM_NODES", "3"}, {"PATH", "/bin"}};
  StatusOr<MultiNodeLaunch> m = PrepareMultiNode(a_, env, paths_, {}, &runner_);
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->env["MASTER_ADDR"], "10.1.0.3");  // the first node's NodeAddr
  EXPECT_EQ(m->env["WORLD_SIZE"], "2");
  EXPECT_EQ(m->env["YARD_RANKS_DIR"], paths_.root + "/ranks");
  EXPECT_GT(std::stoi(m->env["MASTER_PORT"]), 0);
  EXPECT_EQ(m->env["YARD_TF_WORKERS"].rfind("[\"10.1.0.3:", 0), 0u) << m->env["YARD_TF_WORKERS"];
  EXPECT_NE(m->env["YARD_TF_WORKERS"].find("\"10.1.0.4:"), std::string::npos);
  const auto& argv = m->argv;
  ASSERT_GE(argv.size(), 4u);
  EXPECT_EQ(argv[0], "srun");
  EXPECT_EQ(argv[1], "--nodes=2");
  EXPECT_NE(std::find(argv.begin(), argv.end(), "--label"), argv.end());
  EXPECT_EQ(std::vector<std::string>(argv.end() - 3, argv.end()),
            (std::vector<std::string>{"yard-rank", "python3", "train.py"}));
  EXPECT_EQ(runner_.calls()[0].env, std::vector<std::string>{"PATH=/bin"});
  EXPECT_EQ(std::find(argv.begin(), argv.end(), "--"), argv.end()) << "unconfined: no sandbox";
}

TEST_F(MultiNodeTest, EachRankRunsInTheSandboxAndSrunOutsideIt) {
  EnvMap env = {{"SLURM_JOB_NODELIST", "n[3-4]"}, {"SLURM_JOB_NUM_NODES", "2"}};
  std::vector<std::string> sandbox = {"/usr/bin/bwrap", "--unshare-pid", "--tmpfs", "/w", "--"};
  StatusOr<MultiNodeLaunch> m = PrepareMultiNode(a_, env, paths_, sandbox, &runner_);
  ASSERT_TRUE(m.ok()) << m.status().message();
  const auto& argv = m->argv;
  EXPECT_EQ(argv[0], "srun");
  auto bwrap = std::find(argv.begin(), argv.end(), "/usr/bin/bwrap");
  ASSERT_NE(bwrap, argv.end());
  // srun's own options all come before the sandbox; the rank wrapper and
  // the command after it, inside.
  EXPECT_LT(std::find(argv.begin(), argv.end(), "--label"), bwrap);
  EXPECT_LT(std::find(argv.begin(), argv.end(), "--export=ALL"), bwrap);
  EXPECT_EQ(std::vector<std::string>(bwrap, bwrap + 5), sandbox);
  EXPECT_EQ(std::vector<std::string>(bwrap + 5, bwrap + 7), (std::vector<std::string>{"sh", "-c"}));
  EXPECT_EQ(std::vector<std::string>(argv.end() - 3, argv.end()),
            (std::vector<std::string>{"yard-rank", "python3", "train.py"}));
}

TEST_F(MultiNodeTest, RefusesOutsideAnAllocationBigEnough) {
  StatusOr<MultiNodeLaunch> m = PrepareMultiNode(a_, {}, paths_, {}, &runner_);
  EXPECT_EQ(m.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(m.status().message().find("options.nodes >= 2"), std::string::npos);
  m = PrepareMultiNode(a_, {{"SLURM_JOB_NODELIST", "n1"}, {"SLURM_JOB_NUM_NODES", "1"}}, paths_, {},
                       &runner_);
  EXPECT_EQ(m.status().code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace yard
