// The command table of the `yard` executable: one row per subcommand, each
// with its help and the functions that declare its flags and run it.
#include "cli/cli.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>

#include <CLI/CLI.hpp>

#include "agent/job_process.h"
#include "cli/commands.h"
#include "cli/suggest.h"

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
      {"copy", "start the next experiment: copy job assets (and named files) to another folder",
       SetupCopy},
      {"fit", "run a training script remotely; show its output live; mirror its outputs", SetupFit},
      {"submit", "like fit, but return at once with the job id", SetupSubmit},
      {"jobs", "list your jobs", SetupJobs},
      {"status", "show one job", SetupStatus},
      {"logs", "print a job's output (from the start; -f to follow)", SetupLogs},
      {"fetch",
       "download a job's checkpoints, logs and outputs (--all: and the files it wrote "
       "in its working folder)",
       SetupFetch},
      {"cancel", "cancel a job (ends everything it started)", SetupCancel},
      {"machines", "list machine types and your instances (state, age, idle, price)",
       SetupMachines},
      {"down", "end cooling instances now", SetupDown},
      {"cost", "what you spent, per job and instance, running and cooling", SetupCost},
      {"dashboard", "open the server's web page (jobs, curves, logs, machines, cost), signed in",
       SetupDashboard},
      {"server", "run the controller in the foreground", SetupServer},
      {"agent", "run an agent (started by providers on each instance)", SetupAgent},
      {"token", "manage API tokens on this server's home", SetupToken},
      {"replay", "run a recorded fit job (record=True archive) again; compare its final metrics",
       SetupReplay},
  };
  return kRows;
}

// The first word that is not a global flag or its value: the command.
std::string CommandWord(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--server" || a == "--home") {
      ++i;
      continue;
    }
    if (a.rfind("-", 0) == 0) continue;
    return a;
  }
  return "";
}

// Refuses an unknown command with the nearest known one; 0 when known.
int CheckCommand(int argc, char** argv) {
  std::string word = CommandWord(argc, argv);
  std::vector<std::string> names;
  for (const auto& row : Commands()) names.push_back(row.name);
  if (word.empty() || std::find(names.begin(), names.end(), word) != names.end()) return 0;
  std::fprintf(stderr,
               "yard: unknown command '%s'%s\n(commands: %s; `yard --help` says what each does)\n",
               word.c_str(), DidYouMean(word, names).c_str(), JoinNames(names).c_str());
  return 2;
}

// An unknown flag of the chosen command, with the nearest flag it has.
std::string UnknownFlagMessage(CLI::App& app) {
  for (CLI::App* sub : app.get_subcommands()) {
    std::vector<std::string> flags;
    for (const CLI::Option* o : sub->get_options()) {
      for (const auto& l : o->get_lnames()) flags.push_back("--" + l);
      for (const auto& s : o->get_snames()) flags.push_back("-" + s);
    }
    std::vector<std::string> extras = sub->remaining();
    for (const std::string& e : app.remaining())
      extras.push_back(e);  // fallthrough leaves them here
    for (const std::string& extra : extras) {
      if (extra.rfind("-", 0) != 0) continue;
      std::string name = extra.substr(0, extra.find('='));
      return "yard " + sub->get_name() + ": unknown flag " + name + DidYouMean(name, flags) +
             " (`yard " + sub->get_name() + " --help` lists its flags)";
    }
  }
  return "";
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
  app.add_option("--home", global.home,
                 "state folder of the embedded server (default: $YARD_HOME)");
  std::function<int()> run;
  for (const auto& row : Commands()) {
    CLI::App* sub = app.add_subcommand(row.name, row.help);
    auto runner = std::make_shared<std::function<int()>>(row.setup(sub, &global));
    sub->callback([runner, &run] { run = *runner; });
  }
  if (int rc = CheckCommand(argc, argv)) return rc;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ExtrasError& e) {
    std::string message = UnknownFlagMessage(app);
    if (message.empty()) return app.exit(e);
    std::fprintf(stderr, "%s\n", message.c_str());
    return 2;
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!run) return 2;
  // Commands check what they read (client/reply.h), but nothing they meet
  // must abort with a core dump: this catch covers the CLI's commands and the
  // main threads of `yard server` and `yard agent`.
  try {
    return run();
  } catch (const std::exception& e) {
    return StoppedUnexpectedly(
        app.get_subcommands().empty() ? "" : app.get_subcommands()[0]->get_name(), e.what());
  }
}

}  // namespace yard::cli
