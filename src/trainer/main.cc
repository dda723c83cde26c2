// yard-train: trains a TorchScript module on .npy data. See README.md.
#include <cstdio>
#include <string>
#include <vector>

#include "trainer/exit_status.h"
#include "trainer/fit_options.h"
#include "trainer/flags.h"
#include "trainer/runtime_env.h"
#include "trainer/trainer.h"

namespace {

int Fail(const yard::Status& s, yard::trainer::ExitStatus code) {
  std::fprintf(stderr, "yard-train: error: %s\n", s.message().c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace yard::trainer;
  auto flags = ParseFlags(std::vector<std::string>(argv + 1, argv + argc), RealEnv);
  if (!flags.ok()) return Fail(flags.status(), kExitBadInput);
  if (flags->help) {
    std::fputs(Usage().c_str(), stdout);
    return kExitSuccess;
  }
  auto fit = ParseFitKwargs(flags->fit_kwargs);
  if (!fit.ok()) return Fail(fit.status(), kExitBadInput);
  if (WantPassiveOpenMp(ThreadsPerReplica(flags->threads, flags->devices), RealEnv)) {
    ReexecWithPassiveOpenMp(argv);  // see runtime_env.h; returns only on failure
  }
  auto trainer = Trainer::Create(*flags, *fit, stdout);
  if (!trainer.ok()) return Fail(trainer.status(), ExitStatusFor(trainer.status()));
  yard::Status s = (*trainer)->Run();
  if (s.code() == yard::Code::kCancelled) return kExitPreempted;  // said so on stdout
  return s.ok() ? kExitSuccess : Fail(s, kExitFailure);
}
