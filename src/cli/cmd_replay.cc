// `yard replay ARCHIVE`: runs a record archive (written by the Python SDK's
// record=True, docs/formats.md "Record archive") again and reports how its
// final metrics differ. A thin front for `python3 -m trainyard.replay`, which
// holds the logic: it executes it with this yard as YARD_BIN (and the
// --server/--home given to yard).
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "common/files.h"

namespace yard::cli {

namespace {
struct ReplayFlags {
  std::string archive;
  std::string machines;
  double tolerance = 1e-3;
  bool json = false;
};
}  // namespace

Runner SetupReplay(CLI::App* sub, GlobalFlags* global) {
  auto f = std::make_shared<ReplayFlags>();
  sub->add_option("archive", f->archive, "record archive (trainyard-record-<job>.tar.gz)")->required();
  sub->add_option("--machines,-m", f->machines, "machine ids, comma-separated (default: the server's default)");
  sub->add_option("--tolerance", f->tolerance, "relative tolerance for final metrics")->capture_default_str();
  sub->add_flag("--json", f->json, "print the comparison as JSON");
  return [f, global] {
    const char* py = std::getenv("YARD_PYTHON");
    std::string python = py && *py ? py : "python3";
    std::vector<std::string> args = {python, "-m", "trainyard.replay", f->archive, "--tolerance",
                                     std::to_string(f->tolerance)};
    if (!f->machines.empty()) { args.push_back("--machines"); args.push_back(f->machines); }
    if (f->json) args.push_back("--json");
    setenv("YARD_BIN", SelfExecutable().c_str(), 1);
    if (!global->home.empty()) setenv("YARD_HOME", global->home.c_str(), 1);
    if (!global->server.empty()) setenv("YARD_SERVER", global->server.c_str(), 1);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::fflush(nullptr);
    execvp(argv[0], argv.data());
    std::fprintf(stderr, "yard: could not run %s -m trainyard.replay: %s (set YARD_PYTHON to a Python "
                         "with the trainyard package)\n", python.c_str(), std::strerror(errno));
    return 1;
  };
}

}  // namespace yard::cli
