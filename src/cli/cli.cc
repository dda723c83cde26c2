// The command table of the `yard` executable: one row per subcommand, each
// with its help and the functions that declare its flags and run it.
#include "cli/cli.h"

#include <cstdio>
#include <cstring>
#include <memory>

#include <CLI/CLI.hpp>

#include "agent/job_process.h"
#include "cli/commands.h"

namespace yard::cli {
namespace {

struct CommandRow {
  const char* name;
  const char* help;
  // Declares flags on `sub`; returns the function that runs the command.
  std::function<std::function<int()>(CLI::App* sub, GlobalFlags* global)> setup;
};

const std::vector<CommandRow>& Commands() {
  static const std::vector<CommandRow> kRows = {
      {"init", "write editable job assets (yard.yaml, run.sh, Dockerfile) for a script", SetupInit},
      {"copy", "start the next experiment: copy job assets (and named files) to another folder", SetupCopy},
      {"fit", "run a training script remotely; show its output live; mirror its outputs", SetupFit},
      {"submit", "like fit, but return at once with the job id", SetupSubmit},
      {"jobs", "list your jobs", SetupJobs},
      {"status", "show one job", SetupStatus},
      {"logs", "print a job's output (from the start; -f to follow)", SetupLogs},
      {"fetch", "download a job's checkpoints, logs and outputs", SetupFetch},
      {"cancel", "cancel a job (ends everything it started)", SetupCancel},
      {"machines", "list machine types and your instances (state, age, idle, price)", SetupMachines},
      {"down", "end cooling instances now", SetupDown},
      {"cost", "what you spent, per job and instance, running and cooling", SetupCost},
      {"server", "run the controller in the foreground", SetupServer},
      {"agent", "run an agent (started by providers on each instance)", SetupAgent},
      {"token", "manage API tokens on this server's home", SetupToken},
      {"replay", "run a recorded fit job (record=True archive) again; compare its final metrics", SetupReplay},
  };
  return kRows;
}

}  // namespace

int Main(int argc, char** argv) {
  // The shim is exec'd for every job: keep it free of any parsing overhead.
  if (argc >= 2 && std::strcmp(argv[1], "shim") == 0) return RunShim(argc - 1, argv + 1);
  CLI::App app{"yard: send training jobs to other machines (Trainyard)", "yard"};
  app.require_subcommand(1);
  app.fallthrough();  // global flags may follow the subcommand
  GlobalFlags global;
  app.add_option("--server", global.server, "server URL (default: $YARD_SERVER, else embedded)");
  app.add_option("--home", global.home, "state folder of the embedded server (default: $YARD_HOME)");
  std::function<int()> run;
  for (const auto& row : Commands()) {
    CLI::App* sub = app.add_subcommand(row.name, row.help);
    auto runner = std::make_shared<std::function<int()>>(row.setup(sub, &global));
    sub->callback([runner, &run] { run = *runner; });
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return run ? run() : 2;
}

}  // namespace yard::cli
