#include "trainer/flags.h"

#include <gtest/gtest.h>

#include <map>

namespace yard::trainer {
namespace {

const std::vector<std::string> kRequired = {"--model",  "m.pt",      "--train-x",
                                            "x.npy",    "--train-y", "y.npy",
                                            "--epochs", "3",         "--batch-size=32"};

EnvLookup Env(std::map<std::string, std::string> vars) {
  return [vars](const char* name) {
    auto it = vars.find(name);
    return it == vars.end() ? std::string() : it->second;
  };
}

std::vector<std::string> With(std::vector<std::string> extra) {
  std::vector<std::string> args = kRequired;
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

TEST(FlagsTest, ParsesRequiredAndDefaults) {
  auto f = ParseFlags(kRequired, Env({}));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->model, "m.pt");
  EXPECT_EQ(f->epochs, 3);
  EXPECT_EQ(f->batch_size, 32);
  EXPECT_EQ(f->devices, 0);
  EXPECT_EQ(f->seed, 0u);
  EXPECT_EQ(f->checkpoint_dir, "");
  EXPECT_EQ(f->output, "model_out.pt");
}

TEST(FlagsTest, EnvironmentSuppliesOutputLocations) {
  auto env = Env({{"YARD_CHECKPOINT_DIR", "/c"},
                  {"YARD_LOG_DIR", "/l"},
                  {"YARD_METRICS", "/m.jsonl"},
                  {"YARD_RESUME_FROM", "/c/epoch-002.pt"},
                  {"YARD_OUTPUT_DIR", "/o"}});
  auto f = ParseFlags(kRequired, env);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->checkpoint_dir, "/c");
  EXPECT_EQ(f->log_dir, "/l");
  EXPECT_EQ(f->metrics, "/m.jsonl");
  EXPECT_EQ(f->resume_from, "/c/epoch-002.pt");
  EXPECT_EQ(f->output, "/o/model.pt");
  auto g = ParseFlags(With({"--log-dir", "/mine", "--output", "out.pt"}), env);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->log_dir, "/mine");
  EXPECT_EQ(g->output, "out.pt");
}

TEST(FlagsTest, RefusesBadCommandLines) {
  struct Case {
    std::vector<std::string> args;
    std::string want;
  } cases[] = {
      {{"--model", "m.pt"}, "missing required flags: --train-x, --train-y, --epochs, --batch-size"},
      {With({"--bogus", "1"}), "unknown flag \"--bogus\""},
      {With({"--devices"}), "--devices needs a value"},
      {With({"--devices", "0"}), "--devices must be an integer from 1"},
      {With({"--epochs", "x"}), "--epochs must be an integer"},
      {With({"--seed", "-1"}), "--seed must be an integer >= 0"},
      {With({"--val-x", "v.npy"}), "--val-x and --val-y go together"},
  };
  for (const auto& c : cases) {
    auto f = ParseFlags(c.args, Env({}));
    ASSERT_FALSE(f.ok()) << c.want;
    EXPECT_NE(f.status().message().find(c.want), std::string::npos) << f.status().message();
  }
}

TEST(FlagsTest, HelpStopsParsing) {
  auto f = ParseFlags({"--help"}, Env({}));
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(f->help);
  EXPECT_NE(Usage().find("--resume-from CKPT"), std::string::npos);
  EXPECT_NE(Usage().find("[$YARD_CHECKPOINT_DIR]"), std::string::npos);
}

}  // namespace
}  // namespace yard::trainer
