// trainyard::online_fit from C++: a TorchScript MLP built in C++ (no Python)
// learns a synthetic 4-class problem on another machine — by default a
// `local` instance of the embedded server, started on first use.
//
//   build/cpp_online_fit [--record] [MACHINE,...]   (see README.md beside this file)
//
// Checkpoints and TensorBoard logs are mirrored into ./cpp_online_fit_out/
// while the job runs; the trained module is saved there as trained.pt.
// --record also writes trainyard-record-<job>.tar.gz for `yard replay`.
#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "sdk/trainyard.h"

namespace {

// Parameters registered on a bare Module, forward defined from TorchScript
// source: a scripted model without Python.
torch::jit::Module MakeMlp(int64_t in, int64_t hidden, int64_t classes) {
  torch::jit::Module m("Mlp");
  auto param = [](at::Tensor t) { return t.set_requires_grad(true); };
  m.register_parameter("w1", param(torch::randn({in, hidden}) / std::sqrt(double(in))), false);
  m.register_parameter("b1", param(torch::zeros({hidden})), false);
  m.register_parameter("w2", param(torch::randn({hidden, classes}) / std::sqrt(double(hidden))),
                       false);
  m.register_parameter("b2", param(torch::zeros({classes})), false);
  m.define(R"JIT(
def forward(self, x):
    h = torch.relu(torch.matmul(x, self.w1) + self.b1)
    return torch.matmul(h, self.w2) + self.b2
)JIT");
  return m;
}

// Inputs in R^16; the class is the nearest of 4 fixed centres.
std::pair<torch::Tensor, torch::Tensor> MakeData(int64_t rows, const torch::Tensor& centres) {
  torch::Tensor x = torch::randn({rows, centres.size(1)}) * 1.5;
  torch::Tensor y = torch::cdist(x, centres).argmin(1);
  return {x, y};
}

double Accuracy(torch::jit::Module& m, const torch::Tensor& x, const torch::Tensor& y) {
  at::NoGradGuard no_grad;
  return m.forward({x}).toTensor().argmax(1).eq(y).to(torch::kFloat64).mean().item<double>();
}

std::vector<std::string> SplitCommas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');)
    if (!part.empty()) out.push_back(part);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  bool record = !args.empty() && args[0] == "--record";
  if (record) args.erase(args.begin());
  torch::manual_seed(0);
  torch::Tensor centres = torch::randn({4, 16}) * 2;
  auto [x, y] = MakeData(4000, centres);
  auto [vx, vy] = MakeData(1000, centres);
  torch::jit::Module model = MakeMlp(16, 64, 4);
  std::printf("accuracy before training: %.3f\n", Accuracy(model, vx, vy));
  std::fflush(stdout);  // before the SDK's stderr lines when both go to one pipe

  trainyard::FitOptions o;
  o.machine_ids = args.empty() ? std::vector<std::string>{"local"} : SplitCommas(args[0]);
  o.record = record;
  o.batch_size = 32;
  o.epochs = 5;
  o.validation_data = {{vx, vy}};
  o.description = "C++ SDK example";
  o.fit_kwargs = {{"loss", "cross_entropy"},
                  {"optimizer", "adam"},
                  {"learning_rate", 0.005},
                  {"metrics", {"accuracy"}}};
  o.directory_to_save_ckpt = "cpp_online_fit_out/ckpt";
  o.directory_to_save_log = "cpp_online_fit_out/tb";
  try {
    trainyard::FitResult r = trainyard::online_fit(model, x, y, o);
    if (!r.ok()) {
      std::fprintf(stderr, "job %s %s without a model: %s\n", r.job_id.c_str(), r.state.c_str(),
                   r.message.c_str());
      return 1;
    }
    std::printf("job %s: accuracy after training: %.3f; val_loss per epoch:", r.job_id.c_str(),
                Accuracy(*r.model, vx, vy));
    for (double v : r.history->at("val_loss")) std::printf(" %.4f", v);
    std::printf("\n");
    r.model->save("cpp_online_fit_out/trained.pt");
    std::printf("saved cpp_online_fit_out/trained.pt; checkpoints in cpp_online_fit_out/ckpt\n");
    return 0;
  } catch (const trainyard::FitError& e) {
    std::fprintf(stderr, "online_fit failed (%s): %s\n", e.code().c_str(), e.what());
    return 2;
  }
}
