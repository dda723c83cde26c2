// CommandRunner: running a short-lived tool to its end and reading what it
// printed (the slurm and ssh providers' sbatch, squeue, scancel, sinfo,
// ssh; the agent's scontrol). The real one spawns processes; tests use a
// fake that answers from a script.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"

namespace yard {

struct CommandResult {
  int exit_code = 0;  // 128 + signal when killed
  std::string out;    // stdout
  std::string err;    // stderr
  bool ok() const { return exit_code == 0; }
  // The last non-empty line of stderr (else stdout): what a person needs.
  std::string Reason() const;
};

struct CommandSpec {
  std::vector<std::string> argv;  // argv[0] looked up on PATH
  // KEY=VALUE added to (or replacing in) this process's environment. Secrets
  // belong here or in `input`, never in argv (which `ps` shows to everyone).
  std::vector<std::string> env;
  std::string input;  // written to stdin, then closed
  std::chrono::milliseconds timeout{30000};
  // When set, called on the calling thread with each line (without its
  // '\n'; a last line lacking one at the end) the command writes to stdout
  // or stderr, as it comes: the progress of a long command. The output is
  // still collected in the result.
  std::function<void(const std::string& line)> on_line;
};

class CommandRunner {
 public:
  virtual ~CommandRunner() = default;
  // Runs `spec` to the end. A command that ran and failed is a result with
  // a non-zero exit code, not an error; an error means it could not be
  // started, or ran past its timeout (DeadlineExceeded; it is killed).
  // Thread-safe.
  virtual StatusOr<CommandResult> Run(const CommandSpec& spec) = 0;
};

// Real processes (posix_spawn; stdin, stdout, stderr on pipes).
class ProcessCommandRunner : public CommandRunner {
 public:
  StatusOr<CommandResult> Run(const CommandSpec& spec) override;
};

// `s` quoted for a POSIX shell: 'it'\''s'.
std::string ShellQuote(const std::string& s);

}  // namespace yard
