// trainyard::online_fit against a real embedded server: each test gets its
// own YARD_HOME, the server is started by the SDK with this build's `yard`
// (YARD_BINARY), jobs run yard-train on `local` instances, and the server
// and its agents are stopped at the end.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "client/connection.h"
#include "common/files.h"
#include "common/temp_dir_testing.h"
#include "common/wait_testing.h"
#include "sdk/trainyard.h"

namespace trainyard {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A TorchScript MLP made in C++: parameters registered on a bare Module and
// forward defined from TorchScript source (no Python involved).
torch::jit::Module MakeMlp(int64_t in, int64_t hidden, int64_t out) {
  torch::manual_seed(0);
  torch::jit::Module m("Mlp");
  auto param = [](at::Tensor t) { return t.set_requires_grad(true); };
  m.register_parameter("w1", param(torch::randn({in, hidden}) / std::sqrt(double(in))), false);
  m.register_parameter("b1", param(torch::zeros({hidden})), false);
  m.register_parameter("w2", param(torch::randn({hidden, out}) / std::sqrt(double(hidden))), false);
  m.register_parameter("b2", param(torch::zeros({out})), false);
  m.define(R"JIT(
def forward(self, x):
    h = torch.relu(torch.matmul(x, self.w1) + self.b1)
    return torch.matmul(h, self.w2) + self.b2
)JIT");
  return m;
}

// Two classes split by a hyperplane through the origin.
std::pair<torch::Tensor, torch::Tensor> Separable(int64_t rows, uint64_t seed) {
  torch::manual_seed(seed);
  torch::Tensor x = torch::randn({rows, 8});
  torch::Tensor w =
      torch::arange(1, 9, torch::kFloat32) * torch::tensor({1, -1, 1, -1, 1, -1, 1, -1});
  torch::Tensor y = (torch::matmul(x, w) > 0).to(torch::kInt64);
  return {x, y};
}

double Accuracy(torch::jit::Module& m, const torch::Tensor& x, const torch::Tensor& y) {
  at::NoGradGuard no_grad;
  torch::Tensor pred = m.forward({x}).toTensor().argmax(1);
  return pred.eq(y).to(torch::kFloat64).mean().item<double>();
}

bool Alive(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string pid_s, comm, state;
  if (!(stat >> pid_s >> comm >> state)) return false;
  return state != "Z";
}

// PIDs whose command line contains `text` (this test's unique home).
std::vector<int> ProcessesMentioning(const std::string& text) {
  std::vector<int> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream f(e.path() / "cmdline");
    std::string cmd((std::istreambuf_iterator<char>(f)), {});
    if (cmd.find(text) != std::string::npos && Alive(std::stoi(name)))
      out.push_back(std::stoi(name));
  }
  return out;
}

using yard::test_support::WaitFor;

class OnlineFitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    home_ = root_ + "/home";
    options_.connection.home = home_;
    options_.connection.yard_binary = YARD_BINARY;
    options_.machine_ids = {"local"};
    options_.on_progress = [this](const Progress& p) {
      PrintProgress(p);
      progress_.push_back(p);
    };
  }

  void TearDown() override {
    StopServerAndAgents();  // before tmp_ removes the home
  }

  // `yard down --all` ends cooling instances; SIGTERM ends the server; an
  // agent or job process still mentioning this home after that is killed.
  void StopServerAndAgents() {
    if (!fs::exists(home_ + "/server.json")) return;
    std::string down =
        std::string(YARD_BINARY) + " --home " + home_ + " down --all >/dev/null 2>&1";
    EXPECT_EQ(std::system(down.c_str()), 0) << down;
    yard::StatusOr<std::string> info = yard::ReadFile(home_ + "/server.json");
    int pid = info.ok() ? nlohmann::json::parse(*info).value("pid", 0) : 0;
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      EXPECT_TRUE(WaitFor([&] { return !Alive(pid); }, 10s)) << "the server did not stop";
    }
    bool gone = WaitFor([&] { return ProcessesMentioning(home_).empty(); }, 5s);
    for (int p : ProcessesMentioning(home_)) ::kill(p, SIGKILL);
    EXPECT_TRUE(gone) << "agents outlived yard down and the server";
  }

  size_t JobCount() {
    yard::StatusOr<std::unique_ptr<yard::HttpClient>> c =
        yard::Connect({"", "", home_, YARD_BINARY});
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    yard::StatusOr<yard::Json> jobs = (*c)->Get("/v1/jobs");
    EXPECT_TRUE(jobs.ok()) << jobs.status().ToString();
    return jobs.ok() ? (*jobs)["jobs"].size() : 0;
  }

  int CountProgress(Progress::Kind kind) const {
    int n = 0;
    for (const Progress& p : progress_) n += p.kind == kind;
    return n;
  }

  yard::test_support::TempDir tmp_;
  std::string root_ = tmp_.path(), home_;
  FitOptions options_;
  std::vector<Progress> progress_;
};

TEST_F(OnlineFitTest, TrainsAndReturnsModelHistoryCheckpointsAndReusesUploadedData) {
  auto [x, y] = Separable(600, 1);
  auto [vx, vy] = Separable(200, 2);
  constexpr int kEpochs = 3;
  options_.batch_size = 16;
  options_.epochs = kEpochs;
  options_.validation_data = {{vx, vy}};
  options_.description = "c++ sdk test";
  options_.cool_down_period_s = 60;  // the second call takes the same instance
  options_.fit_kwargs = {
      {"loss", "cross_entropy"}, {"learning_rate", 0.02}, {"metrics", {"accuracy"}}};
  options_.directory_to_save_ckpt = root_ + "/ckpt";
  options_.directory_to_save_log = root_ + "/logs";

  FitResult r = online_fit(MakeMlp(8, 16, 2), x, y, options_);

  ASSERT_TRUE(r.ok()) << r.state << ": " << r.message;
  EXPECT_EQ(r.state, "succeeded");
  EXPECT_GT(Accuracy(*r.model, vx, vy), 0.9);
  ASSERT_TRUE(r.history);
  std::set<std::string> keys;
  for (const auto& [k, v] : *r.history) {
    keys.insert(k);
    EXPECT_EQ(v.size(), size_t(kEpochs)) << k;
  }
  EXPECT_EQ(keys, (std::set<std::string>{"loss", "accuracy", "val_loss", "val_accuracy"}));
  EXPECT_LT(r.history->at("loss").back(), r.history->at("loss").front());
  EXPECT_EQ(CountProgress(Progress::Kind::kEpoch), kEpochs) << "one progress line per epoch";
  for (int e = 1; e <= kEpochs; ++e) {
    char name[32];
    std::snprintf(name, sizeof name, "/ckpt/epoch-%03d.pt", e);
    EXPECT_TRUE(fs::is_regular_file(root_ + name)) << name;
  }
  bool tb = false;
  for (const auto& f : fs::directory_iterator(root_ + "/logs"))
    tb |= f.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
  EXPECT_TRUE(tb) << "TensorBoard events mirrored into directory_to_save_log";
  EXPECT_GT(r.transfer.data_chunks_sent, 0u);
  EXPECT_EQ(r.transfer.data_chunks_sent, r.transfer.data_chunks_total);

  options_.epochs = 1;
  options_.validation_data.reset();
  options_.record = true;
  ::setenv("TRAINYARD_RECORD_DIR", (root_ + "/records").c_str(), 1);
  FitResult again = online_fit(MakeMlp(8, 16, 2), x, y, options_);
  ASSERT_TRUE(again.ok()) << again.state << ": " << again.message;
  EXPECT_NE(again.job_id, r.job_id);
  EXPECT_GT(again.transfer.data_chunks_total, 0u);
  EXPECT_EQ(again.transfer.data_chunks_sent, 0u) << "the same tensors are not sent twice";
  EXPECT_EQ(again.history->at("loss").size(), 1u);

  // The record archive holds what `yard replay` needs (docs/formats.md).
  EXPECT_EQ(again.record_archive, root_ + "/records/trainyard-record-" + again.job_id + ".tar.gz");
  std::string unpack = "tar -xzf " + again.record_archive + " -C " + root_ + "/records";
  ASSERT_EQ(std::system(unpack.c_str()), 0) << unpack;
  yard::StatusOr<std::string> text = yard::ReadFile(root_ + "/records/record.json");
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  nlohmann::json rec = nlohmann::json::parse(*text);
  EXPECT_EQ(rec["format"], "trainyard-record");
  EXPECT_EQ(rec["version"], 1);
  EXPECT_EQ(rec["job_id"], again.job_id);
  EXPECT_EQ(rec["spec"]["command"][0], "yard-train");
  EXPECT_FALSE(rec["spec"].contains("bundle"));
  EXPECT_EQ(rec["job"]["state"], "succeeded");
  EXPECT_DOUBLE_EQ(rec["final_metrics"]["loss"].get<double>(), again.history->at("loss").back());
  for (const char* f :
       {"events.jsonl", "bundle/manifest.json", "bundle/main/model.pt", "bundle/main/fit_spec.json",
        "bundle/data/train_x.npy", "bundle/data/train_y.npy"})
    EXPECT_TRUE(fs::is_regular_file(root_ + "/records/" + f)) << f;
}

TEST_F(OnlineFitTest, BadInputFailsBeforeAnyJobExists) {
  size_t before = JobCount();
  auto [x, y] = Separable(100, 1);
  auto expect_refused = [&](const FitOptions& o, const torch::Tensor& tx, const torch::Tensor& ty,
                            const std::string& needle) {
    try {
      online_fit(MakeMlp(8, 4, 2), tx, ty, o);
      ADD_FAILURE() << "accepted; expected an error about " << needle;
    } catch (const FitError& e) {
      std::printf("refused as expected: %s\n", e.what());
      EXPECT_EQ(e.code(), "invalid_argument") << e.what();
      EXPECT_EQ(e.job_id(), "");
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_refused(options_, x, y.slice(0, 0, 99), "train_X has 100 rows but train_Y has 99");
  FitOptions o = options_;
  o.fit_kwargs = {{"loss", "hinge"}};
  expect_refused(o, x, y, "hinge");
  o.fit_kwargs = {{"epochs", 3}};
  expect_refused(o, x, y, "FitOptions::epochs");
  o = options_;
  o.batch_size = 0;
  expect_refused(o, x, y, "batch_size");
  expect_refused(options_, x, y.to(torch::kUInt8), "torch::kInt64");
  o = options_;
  o.validation_data = {{x, y.slice(0, 0, 10)}};
  expect_refused(o, x, y, "validation");
  EXPECT_EQ(CountProgress(Progress::Kind::kInfo), 0) << "nothing was uploaded";
  // Only the server knows its machine types: refused when the job is asked
  // for, so no job exists either.
  o = options_;
  o.machine_ids = {"no-such-type"};
  expect_refused(o, x, y, "no-such-type");
  EXPECT_EQ(JobCount(), before) << "no job was created";
}

TEST_F(OnlineFitTest, JobThatEndsWithoutModelIsReturnedWithItsReason) {
  auto [x, y] = Separable(64, 1);
  // Three output columns against two-column regression targets: yard-train
  // refuses the model on the instance (exit 2), so the job fails.
  FitResult r = online_fit(MakeMlp(8, 4, 3), x, torch::zeros({64, 2}), [&] {
    FitOptions o = options_;
    o.fit_kwargs = {{"loss", "mse"}};
    return o;
  }());
  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(r.history);
  EXPECT_FALSE(r.job_id.empty());
  EXPECT_EQ(r.state, "failed");
  std::string tail;
  for (const std::string& line : r.last_output) tail += line + "\n";
  EXPECT_NE(tail.find("yard-train: error"), std::string::npos) << tail;
  ASSERT_FALSE(progress_.empty());
  EXPECT_NE(progress_.back().text.find("no model to return"), std::string::npos)
      << progress_.back().text;
}

}  // namespace
}  // namespace trainyard
