// `yard replay ARCHIVE`: runs a record archive (written by either SDK's
// record=True, docs/formats.md "Record archive") again on the connected
// server and reports how its final metrics differ (src/sdk/replay.h).
// Exit status: 0 when the replayed job succeeded and every final metric is
// within the tolerance, 1 when they differ or the job failed, 2 for a bad
// archive or a server that fails us.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "common/files.h"
#include "common/strings.h"
#include "sdk/replay.h"

namespace yard::cli {

namespace {
struct ReplayFlags {
  std::string archive;
  std::string machines;
  double tolerance = 1e-3;
  bool json = false;
};

// The interpreter of a Keras runner command: $TRAINYARD_PYTHON, else
// $YARD_PYTHON, else python3 on the instance's PATH.
std::string RunnerPython() { return EnvOr("TRAINYARD_PYTHON", EnvOr("YARD_PYTHON", "python3")); }

std::string Number(const Json& v) {
  if (!v.is_number()) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", v.get<double>());
  return buf;
}

void PrintTable(const Json& r) {
  std::printf("replay of %s as %s: %s\n", r["recorded_job"].get<std::string>().c_str(),
              r["job"].get<std::string>().c_str(), r["state"].get<std::string>().c_str());
  std::printf("%-16s %12s %12s %12s\n", "metric", "recorded", "replayed", "diff");
  for (const Json& m : r["metrics"]) {
    std::printf("%-16s %12s %12s %12s%s\n", m["metric"].get<std::string>().c_str(),
                Number(m["recorded"]).c_str(), Number(m["replayed"]).c_str(),
                Number(m["diff"]).c_str(), m["within_tolerance"].get<bool>() ? "" : "  DIFFERS");
  }
  std::printf("final metrics %s (tolerance %g)\n", r["same"].get<bool>() ? "match" : "differ",
              r["tolerance"].get<double>());
}

int RunReplay(const ReplayFlags& f, const GlobalFlags& global) {
  // The archive first: a bad one starts no server.
  StatusOr<trainyard::internal::LoadedRecord> loaded =
      trainyard::internal::LoadRecordArchive(f.archive);
  if (!loaded.ok()) {
    std::fprintf(stderr, "yard replay: %s\n", loaded.status().message().c_str());
    return 2;
  }
  std::unique_ptr<HttpClient> client = ConnectOrReport(global);
  if (!client) return 2;
  trainyard::internal::ReplayOptions o;
  o.machines = SplitNonEmpty(f.machines, ',');
  o.tolerance = f.tolerance;
  o.python = RunnerPython();
  bool json = f.json;
  // With --json stdout holds the comparison only: the job's lines go to stderr.
  o.on_progress = [json](const trainyard::Progress& p) {
    if (json)
      std::fprintf(stderr, "%s\n", p.text.c_str());
    else
      trainyard::PrintProgress(p);
  };
  StatusOr<Json> r = trainyard::internal::Replay(*client, *loaded, o);
  if (!r.ok()) {
    std::fprintf(stderr, "yard replay: %s\n", r.status().message().c_str());
    return 2;
  }
  if (json)
    std::printf("%s\n", r->dump(2).c_str());
  else
    PrintTable(*r);
  return (*r)["same"].get<bool>() ? 0 : 1;
}
}  // namespace

Runner SetupReplay(CLI::App* sub, GlobalFlags* global) {
  auto f = std::make_shared<ReplayFlags>();
  sub->add_option("archive", f->archive, "record archive (trainyard-record-<job>.tar.gz)")
      ->required();
  sub->add_option("--machines,-m", f->machines,
                  "machine ids, comma-separated (default: the server's default)");
  sub->add_option("--tolerance", f->tolerance, "relative tolerance for final metrics")
      ->capture_default_str();
  sub->add_flag("--json", f->json, "print the comparison as JSON");
  return [f, global] { return RunReplay(*f, *global); };
}

}  // namespace yard::cli
