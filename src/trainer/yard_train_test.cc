// End-to-end tests of the yard-train binary on scikit-learn's digits. The
// fixtures (a TorchScript MLP, .npy arrays, bad files) are made at test time
// by tests/trainer/make_fixtures.py with Debian's /usr/bin/python3 (torch
// 1.13) and cached in the build folder; Python also checks the outputs the
// way a user would (torch.jit.load, TensorBoard's EventAccumulator).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace yard::trainer {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr const char* kPython = "/usr/bin/python3";

struct Result {
  int code = -1;
  std::string output;  // stdout and stderr
};

std::string Quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

Result Shell(const std::string& command) {
  Result r;
  std::FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The fixture folder, made once per build (under a lock: ctest runs tests in
// parallel) and again whenever make_fixtures.py changes. "" if Python lacks
// torch or scikit-learn.
std::string Fixtures() {
  static const std::string dir = [] {
    if (Shell(std::string(kPython) + " -c 'import torch, sklearn'").code != 0) return std::string();
    std::string cache = YARD_TRAINER_FIXTURES;
    fs::create_directories(cache);
    int lock = open((cache + "/.lock").c_str(), O_CREAT | O_RDWR, 0644);
    flock(lock, LOCK_EX);
    std::string script = std::string(YARD_TRAINER_TEST_DIR) + "/make_fixtures.py";
    if (!fs::exists(cache + "/READY") || ReadAll(cache + "/make_fixtures.py") != ReadAll(script)) {
      fs::remove(cache + "/READY");
      Result r = Shell(std::string(kPython) + " " + Quote(script) + " " + Quote(cache));
      if (r.code != 0) ADD_FAILURE() << "make_fixtures.py failed:\n" << r.output;
      fs::copy_file(script, cache + "/make_fixtures.py", fs::copy_options::overwrite_existing);
    }
    close(lock);
    return cache;
  }();
  return dir;
}

#define REQUIRE_FIXTURES() \
  if (Fixtures().empty()) GTEST_SKIP() << kPython << " lacks torch or sklearn"

Json Inspect(const std::string& python, const std::string& args) {
  Result r = Shell(python + " " +
                   Quote(std::string(YARD_TRAINER_TEST_DIR) + "/inspect_outputs.py") + " " + args);
  EXPECT_EQ(r.code, 0) << r.output;
  size_t last = r.output.rfind("\n{");  // libraries may log before the JSON line
  Json j =
      Json::parse(last == std::string::npos ? r.output : r.output.substr(last + 1), nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.output;
  return j;
}

// JSON lines of a metrics file: the per-epoch ones and the "replicas" ones.
struct Metrics {
  std::vector<Json> epochs, replicas;
};
Metrics ReadMetrics(const std::string& path) {
  Metrics m;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    Json j = Json::parse(line);
    (j.contains("event") ? m.replicas : m.epochs).push_back(j);
  }
  return m;
}

class YardTrainTest : public testing::Test {
 protected:
  void SetUp() override {
    tmp_ = testing::TempDir() + "/yard_train_" +
           testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
           std::to_string(getpid());
    fs::remove_all(tmp_);
    fs::create_directories(tmp_);
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(tmp_);
  }

  std::string Fx(const std::string& name) const { return Fixtures() + "/" + name; }

  // yard-train on the digits fixtures with `extra` flags appended.
  Result Train(const std::string& extra, const std::string& env = "") const {
    std::string cmd = env + " " + Quote(YARD_TRAIN_BINARY) + " --model " + Quote(Fx("mlp.pt")) +
                      " --train-x " + Quote(Fx("x_train.npy")) + " --train-y " +
                      Quote(Fx("y_train.npy")) + " --threads 2 " + extra;
    return Shell(cmd);
  }
  std::string WithVal() const {
    return " --val-x " + Quote(Fx("x_val.npy")) + " --val-y " + Quote(Fx("y_val.npy"));
  }

  std::string tmp_;
};

TEST_F(YardTrainTest, TrainsDigitsWithCheckpointsEventsAndMetrics) {
  REQUIRE_FIXTURES();
  Result r = Train(WithVal() + " --epochs 5 --batch-size 32 --fit-kwargs " +
                   Quote(R"({"metrics": ["accuracy"], "learning_rate": 0.003})") +
                   " --checkpoint-dir " + tmp_ + "/ckpt --log-dir " + tmp_ + "/tb --metrics " +
                   tmp_ + "/metrics.jsonl --output " + tmp_ + "/out/model.pt");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("Epoch 5/5 - loss: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(" - val_accuracy: "), std::string::npos) << r.output;

  Metrics m = ReadMetrics(tmp_ + "/metrics.jsonl");
  ASSERT_EQ(m.epochs.size(), 5u);
  EXPECT_GT(m.epochs.back()["val_accuracy"].get<double>(), 0.9);
  EXPECT_LT(m.epochs.back()["loss"].get<double>(), m.epochs.front()["loss"].get<double>());
  for (const char* key :
       {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "samples_per_s"}) {
    EXPECT_TRUE(m.epochs[0].contains(key)) << key;
  }

  std::string checkpoints;
  for (int e = 1; e <= 5; ++e) {
    std::string pt = tmp_ + "/ckpt/epoch-00" + std::to_string(e) + ".pt";
    EXPECT_TRUE(fs::exists(pt)) << pt;
    EXPECT_TRUE(fs::exists(tmp_ + "/ckpt/epoch-00" + std::to_string(e) + ".state"));
    checkpoints += " " + Quote(pt);
  }
  EXPECT_EQ(Inspect(kPython, "load" + checkpoints + " " + Quote(tmp_ + "/out/model.pt"))["loaded"],
            6);

  std::string venv = YARD_VENV_PYTHON;
  if (!fs::exists(venv))
    GTEST_SKIP() << venv << " (with tensorboard) is missing: run scripts/setup.sh";
  Json tb = Inspect(venv, "tb " + Quote(tmp_ + "/tb"));
  for (const char* tag : {"loss", "accuracy", "val_loss", "val_accuracy"}) {
    ASSERT_TRUE(tb.contains(tag)) << tb.dump();
    ASSERT_EQ(tb[tag].size(), 5u) << tag;
    for (int e = 0; e < 5; ++e) {
      EXPECT_EQ(tb[tag][e][0].get<int>(), e + 1);
      EXPECT_NEAR(tb[tag][e][1].get<double>(), m.epochs[e][tag].get<double>(), 1e-6)
          << tag << " epoch " << e + 1;
    }
  }
}

TEST_F(YardTrainTest, TwoDevicesReachTheSameWeightsAsOne) {
  REQUIRE_FIXTURES();
  for (int batch : {8, 5}) {
    std::string b = std::to_string(batch);
    for (int devices : {1, 2}) {
      std::string d = std::to_string(devices);
      Result r =
          Train(" --epochs 2 --batch-size " + b + " --devices " + d + " --output " + tmp_ + "/m" +
                b + "-" + d + ".pt --metrics " + tmp_ + "/m" + b + "-" + d + ".jsonl");
      ASSERT_EQ(r.code, 0) << r.output;
    }
    Json diff = Inspect(kPython, "diff " + tmp_ + "/m" + b + "-1.pt " + tmp_ + "/m" + b + "-2.pt");
    EXPECT_LT(diff["max_abs_diff"].get<double>(), 1e-5) << "batch " << batch;
    Metrics two = ReadMetrics(tmp_ + "/m" + b + "-2.jsonl");
    ASSERT_EQ(two.replicas.size(), 1u);
    EXPECT_EQ(two.replicas[0]["devices"], 2);
    EXPECT_EQ(two.replicas[0]["shard_sizes"],
              batch == 5 ? Json::array({3, 2}) : Json::array({4, 4}));
    Metrics one = ReadMetrics(tmp_ + "/m" + b + "-1.jsonl");
    EXPECT_NEAR(one.epochs[1]["loss"].get<double>(), two.epochs[1]["loss"].get<double>(), 1e-5);
  }
}

TEST_F(YardTrainTest, ResumeRepeatsAnUninterruptedRun) {
  REQUIRE_FIXTURES();
  std::string common = WithVal() + " --batch-size 32 --seed 3 --fit-kwargs " +
                       Quote(R"({"metrics": ["accuracy"], "optimizer": "adam"})");
  Result full =
      Train(common + " --epochs 4 --metrics " + tmp_ + "/full.jsonl --output " + tmp_ + "/full.pt");
  ASSERT_EQ(full.code, 0) << full.output;
  // The interrupted run takes its output locations from the environment, as
  // under a Trainyard agent.
  std::string env = "YARD_CHECKPOINT_DIR=" + tmp_ + "/ckpt YARD_METRICS=" + tmp_ +
                    "/part.jsonl YARD_OUTPUT_DIR=" + tmp_ + "/out";
  Result first = Train(common + " --epochs 2", env);
  ASSERT_EQ(first.code, 0) << first.output;
  Result rest =
      Train(common + " --epochs 4", env + " YARD_RESUME_FROM=" + tmp_ + "/ckpt/epoch-002.pt");
  ASSERT_EQ(rest.code, 0) << rest.output;
  EXPECT_EQ(rest.output.find("Epoch 1/4"), std::string::npos) << rest.output;
  EXPECT_NE(rest.output.find("Epoch 3/4"), std::string::npos) << rest.output;

  Metrics a = ReadMetrics(tmp_ + "/full.jsonl"), b = ReadMetrics(tmp_ + "/part.jsonl");
  ASSERT_EQ(a.epochs.size(), 4u);
  ASSERT_EQ(b.epochs.size(), 4u);
  for (int e = 0; e < 4; ++e) {
    EXPECT_EQ(b.epochs[e]["epoch"], e + 1);
    for (const char* key : {"loss", "accuracy", "val_loss", "val_accuracy"}) {
      EXPECT_NEAR(a.epochs[e][key].get<double>(), b.epochs[e][key].get<double>(), 1e-6)
          << key << " " << e + 1;
    }
  }
  EXPECT_TRUE(fs::exists(tmp_ + "/ckpt/epoch-004.pt"));
  Json diff = Inspect(kPython, "diff " + tmp_ + "/full.pt " + tmp_ + "/out/model.pt");
  EXPECT_LT(diff["max_abs_diff"].get<double>(), 1e-6);
}

// A spot interruption notice (here the file, present from the start) stops
// training after one step of epoch 2 with a mid-epoch checkpoint; the run
// resumed from it continues at step 2 with the same batches, and its whole
// history (epoch 2's averages over every sample included) equals an
// uninterrupted run's.
TEST_F(YardTrainTest, MidEpochCheckpointOnANoticeResumesAtTheStep) {
  REQUIRE_FIXTURES();
  std::string common = WithVal() + " --batch-size 32 --seed 5 --fit-kwargs " +
                       Quote(R"({"metrics": ["accuracy"], "optimizer": "sgd", "momentum": 0.9})");
  Result full =
      Train(common + " --epochs 3 --metrics " + tmp_ + "/full.jsonl --output " + tmp_ + "/full.pt");
  ASSERT_EQ(full.code, 0) << full.output;
  std::string env = "YARD_CHECKPOINT_DIR=" + tmp_ + "/ckpt YARD_METRICS=" + tmp_ +
                    "/part.jsonl YARD_OUTPUT_DIR=" + tmp_ + "/out";
  ASSERT_EQ(Train(common + " --epochs 1", env).code, 0);
  std::string notice = tmp_ + "/notice.json";
  std::ofstream(notice) << R"({"action": "terminate", "time": "2026-12-06T03:05:00Z"})";
  Result cut =
      Train(common + " --epochs 3", env + " YARD_PREEMPTION_NOTICE=" + notice +
                                        " YARD_RESUME_FROM=" + tmp_ + "/ckpt/epoch-001.pt");
  ASSERT_EQ(cut.code, 75) << cut.output;
  EXPECT_NE(cut.output.find(
                "Spot interruption notice: saved epoch-001-step-00001.pt (epoch 2, step 1 of 45)"),
            std::string::npos)
      << cut.output;
  EXPECT_EQ(cut.output.find("Epoch 2/3"), std::string::npos)
      << "the epoch did not end" << cut.output;
  ASSERT_TRUE(fs::exists(tmp_ + "/ckpt/epoch-001-step-00001.state"));
  Result rest = Train(common + " --epochs 3", env + " YARD_PREEMPTION_NOTICE=" + tmp_ + "/absent" +
                                                  " YARD_RESUME_FROM=" + tmp_ +
                                                  "/ckpt/epoch-001-step-00001.pt");
  ASSERT_EQ(rest.code, 0) << rest.output;
  EXPECT_NE(rest.output.find("Resuming epoch 2 at step 2"), std::string::npos) << rest.output;

  Metrics a = ReadMetrics(tmp_ + "/full.jsonl"), b = ReadMetrics(tmp_ + "/part.jsonl");
  ASSERT_EQ(a.epochs.size(), 3u);
  ASSERT_EQ(b.epochs.size(), 3u) << "epoch 2's metrics written once, by the resumed run";
  for (int e = 0; e < 3; ++e) {
    for (const char* key : {"loss", "accuracy", "val_loss", "val_accuracy"}) {
      EXPECT_NEAR(a.epochs[e][key].get<double>(), b.epochs[e][key].get<double>(), 1e-6)
          << key << " " << e + 1;
    }
  }
  Json diff = Inspect(kPython, "diff " + tmp_ + "/full.pt " + tmp_ + "/out/model.pt");
  EXPECT_LT(diff["max_abs_diff"].get<double>(), 1e-6);
}

TEST_F(YardTrainTest, BadInputFailsClearlyBeforeTraining) {
  REQUIRE_FIXTURES();
  std::string outputs =
      " --epochs 1 --batch-size 32 --metrics " + tmp_ + "/m.jsonl --output " + tmp_ + "/o.pt";
  auto model = [&](const std::string& m) {
    return " --model " + Quote(Fx(m)) + outputs;  // a later --model wins
  };
  struct Case {
    std::string flags, want;
  } cases[] = {
      {" --train-y " + Quote(Fx("y_short.npy")) + outputs,
       "inputs have 1437 rows but targets have 1436"},
      {" --fit-kwargs '{\"loss\": \"hinge\"}'" + outputs,
       "unknown loss \"hinge\"; allowed: cross_entropy"},
      {" --fit-kwargs '{\"epochs\": 3}'" + outputs, "may not set \"epochs\""},
      {model("not_script.pt"),
       "was saved by a different torch version or is not a TorchScript file: save it "
       "with torch.jit.script(model).save(path) using torch 1.13"},
      {model("garbage.pt"), "is not a TorchScript file"},
      {model("missing.pt"), "missing.pt: no such file"},
      {" --train-x " + Quote(Fx("x_uint8.npy")) + outputs, "unsupported dtype '|u1'"},
      {" --train-x " + Quote(Fx("mlp.pt")) + outputs, "not a .npy file"},
      {" --val-x " + Quote(Fx("x_val.npy")) + outputs, "--val-x and --val-y go together"},
      {" --train-x " + Quote(Fx("y_train.npy")) + " --train-y " + Quote(Fx("y_train.npy")) +
           outputs,
       "the model cannot take the training inputs"},
      {" --bogus 1" + outputs, "unknown flag \"--bogus\""},
  };
  for (const auto& c : cases) {
    Result r = Train(c.flags);
    EXPECT_EQ(r.code, 2) << c.flags << "\n" << r.output;
    EXPECT_NE(r.output.find(c.want), std::string::npos)
        << "want: " << c.want << "\ngot: " << r.output;
    EXPECT_EQ(r.output.find("Epoch "), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(tmp_ + "/o.pt")) << c.flags;
    EXPECT_FALSE(fs::exists(tmp_ + "/m.jsonl")) << c.flags;
  }
}

TEST_F(YardTrainTest, RegressionReshapesTargetsAndConvertsDtypes) {
  REQUIRE_FIXTURES();
  // y_reg is float64 of shape [N]; the model gives [N, 1] in float32.
  Result r = Train(" --model " + Quote(Fx("reg.pt")) + " --train-y " + Quote(Fx("y_reg.npy")) +
                   " --epochs 3 --batch-size 16 --devices 2 --fit-kwargs " +
                   Quote(R"({"loss": "mse", "metrics": ["mae"], "optimizer": "sgd", "momentum": 0.9,
                            "learning_rate": 0.01})") +
                   " --metrics " + tmp_ + "/m.jsonl --output " + tmp_ + "/o.pt");
  ASSERT_EQ(r.code, 0) << r.output;
  Metrics m = ReadMetrics(tmp_ + "/m.jsonl");
  ASSERT_EQ(m.epochs.size(), 3u);
  EXPECT_LT(m.epochs[2]["loss"].get<double>(), m.epochs[0]["loss"].get<double>());
  EXPECT_TRUE(m.epochs[2].contains("mae"));
}

TEST_F(YardTrainTest, HelpListsFlags) {
  Result r = Shell(Quote(YARD_TRAIN_BINARY) + " --help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.output.find("--fit-kwargs JSON"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace yard::trainer
