// FakeCommandRunner: a CommandRunner for tests that records every call and
// answers through a function the test sets.
#pragma once

#include <functional>
#include <mutex>
#include <vector>

#include "common/command_runner.h"

namespace yard {

class FakeCommandRunner : public CommandRunner {
 public:
  using Answer = std::function<StatusOr<CommandResult>(const CommandSpec&)>;
  explicit FakeCommandRunner(Answer answer) : answer_(std::move(answer)) {}

  StatusOr<CommandResult> Run(const CommandSpec& spec) override {
    Answer answer;
    {
      std::lock_guard<std::mutex> lock(mu_);
      calls_.push_back(spec);
      answer = answer_;
    }
    return answer(spec);
  }
  void SetAnswer(Answer answer) {
    std::lock_guard<std::mutex> lock(mu_);
    answer_ = std::move(answer);
  }
  std::vector<CommandSpec> calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  // Calls whose argv[0] ends with `tool` ("sbatch", "ssh").
  std::vector<CommandSpec> CallsOf(const std::string& tool) {
    std::vector<CommandSpec> out;
    for (auto& c : calls())
      if (c.argv[0].size() >= tool.size() &&
          c.argv[0].compare(c.argv[0].size() - tool.size(), tool.size(), tool) == 0)
        out.push_back(c);
    return out;
  }

 private:
  std::mutex mu_;
  Answer answer_;
  std::vector<CommandSpec> calls_;
};

// A result with exit code `code` and the given output.
inline CommandResult Result(int code, std::string out, std::string err = "") {
  CommandResult r;
  r.exit_code = code;
  r.out = std::move(out);
  r.err = std::move(err);
  return r;
}

}  // namespace yard
