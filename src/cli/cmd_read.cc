// The read and control commands: jobs, status, logs, fetch, cancel, machines.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <map>

#include "cli/commands.h"
#include "cli/job_view.h"
#include "cli/suggest.h"
#include "client/follow.h"
#include "client/transfer.h"
#include "common/manifest.h"

namespace yard::cli {
namespace {

// Runs `body` with a connected client; reports errors as exit code 1.
Runner WithClient(GlobalFlags* global, std::function<Status(HttpClient&)> body) {
  return [global, body] {
    auto client = ConnectOrReport(*global);
    if (!client) return 1;
    Status s = body(*client);
    return s.ok() ? 0 : Fail(s.message());
  };
}

// Cost per local calendar day ("2026-12-06"), each interval counted on the
// day it began.
std::map<std::string, double> CostByDay(const Json& entries) {
  std::map<std::string, double> days;
  for (const auto& e : entries) days[FormatTime(e["start"]).substr(0, 10)] += e["cost"].get<double>();
  return days;
}

constexpr const char* kJobHelp = "job id (a unique start of it will do; '-': your newest job)";

std::string Cell(const Json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return "-";
  const Json& v = j[key];
  return v.is_string() ? (v.get<std::string>().empty() ? "-" : v.get<std::string>()) : v.dump();
}

const std::vector<std::string>& JobStates() {
  static const std::vector<std::string> kStates = {"waiting", "requesting", "starting", "running",
                                                   "succeeded", "failed", "cancelled"};
  return kStates;
}

Status CheckState(const std::string& state) {
  const auto& states = JobStates();
  if (state.empty() || std::find(states.begin(), states.end(), state) != states.end()) return Status::Ok();
  return InvalidArgument("--state " + state + " is not a job state" + DidYouMean(state, states) +
                         " (states: " + JoinNames(states) + ")");
}

}  // namespace

StatusOr<std::string> ResolveJob(const HttpClient& client, const std::string& given) {
  if (given == "-") {
    YARD_ASSIGN_OR_RETURN(Json newest, client.Get("/v1/jobs?limit=1"));
    if (newest["jobs"].empty()) return NotFound("you have no jobs yet, so '-' (your newest job) names none");
    return newest["jobs"][0]["id"].get<std::string>();
  }
  StatusOr<Json> exact = client.Get("/v1/jobs/" + given);
  if (exact.ok() || exact.status().code() != Code::kNotFound) {
    if (!exact.ok()) return exact.status();
    return given;
  }
  YARD_ASSIGN_OR_RETURN(Json all, client.Get("/v1/jobs?limit=100000"));
  std::vector<std::string> matches;
  for (const auto& j : all["jobs"]) {
    std::string id = j["id"];
    if (id.rfind(given, 0) == 0 || id.rfind("job-" + given, 0) == 0) matches.push_back(id);
  }
  if (matches.size() == 1) return matches[0];
  if (matches.empty())
    return NotFound("no job " + given + " of yours (`yard jobs` lists them; a unique start of an id "
                    "or '-' for the newest will do)");
  if (matches.size() > 5) matches.resize(5);
  return InvalidArgument("'" + given + "' starts several job ids (" + JoinNames(matches) +
                         "...): give more of it");
}

Runner SetupJobs(CLI::App* sub, GlobalFlags* global) {
  struct Flags { std::string state, search; int limit = 50; bool json = false; };
  auto f = std::make_shared<Flags>();
  sub->add_option("--state", f->state, "only jobs in this state");
  sub->add_option("--search,-s", f->search, "only jobs whose description contains this");
  sub->add_option("--limit", f->limit, "at most this many")->capture_default_str();
  sub->add_flag("--json", f->json, "print JSON");
  return WithClient(global, [f](HttpClient& c) -> Status {
    YARD_RETURN_IF_ERROR(CheckState(f->state));
    std::string q = "/v1/jobs?limit=" + std::to_string(f->limit);
    if (!f->state.empty()) q += "&state=" + f->state;
    if (!f->search.empty()) q += "&q=" + f->search;
    YARD_ASSIGN_OR_RETURN(Json reply, c.Get(q));
    if (f->json) { std::cout << reply["jobs"].dump(2) << "\n"; return Status::Ok(); }
    std::vector<std::vector<std::string>> rows = {{"JOB", "STATE", "MACHINE", "CREATED", "DESCRIPTION"}};
    for (const auto& j : reply["jobs"])
      rows.push_back({j["id"], j["state"], Cell(j, "machine_type"), FormatTime(j["created_at"]),
                      Cell(j, "description")});
    PrintTable(rows);
    return Status::Ok();
  });
}

Runner SetupStatus(CLI::App* sub, GlobalFlags* global) {
  struct Flags { std::string job; bool json = false; };
  auto f = std::make_shared<Flags>();
  sub->add_option("job", f->job, kJobHelp)->required();
  sub->add_flag("--json", f->json, "print JSON");
  return WithClient(global, [f](HttpClient& c) -> Status {
    YARD_ASSIGN_OR_RETURN(f->job, ResolveJob(c, f->job));
    YARD_ASSIGN_OR_RETURN(Json reply, c.Get("/v1/jobs/" + f->job));
    const Json& j = reply["job"];
    if (f->json) { std::cout << j.dump(2) << "\n"; return Status::Ok(); }
    PrintTable({{"job", j["id"]}, {"state", j["state"]}, {"description", Cell(j, "description")},
                {"command", j["command"].dump()}, {"machines", j["machines"].dump()},
                {"instance", Cell(j, "instance")}, {"machine type", Cell(j, "machine_type")},
                {"created", FormatTime(j["created_at"])}, {"updated", FormatTime(j["updated_at"])},
                {"exit code", Cell(j, "exit_code")}, {"message", Cell(j, "message")}});
    return Status::Ok();
  });
}

Runner SetupLogs(CLI::App* sub, GlobalFlags* global) {
  struct Flags { std::string job; bool follow = false; bool all = false; };
  auto f = std::make_shared<Flags>();
  sub->add_option("job", f->job, kJobHelp)->required();
  sub->add_flag("--follow,-f", f->follow, "keep printing until the job ends");
  sub->add_flag("--events", f->all, "also show Trainyard's events (states, decisions, metrics)");
  return WithClient(global, [f](HttpClient& c) -> Status {
    YARD_ASSIGN_OR_RETURN(f->job, ResolveJob(c, f->job));
    LiveJobView view(f->job);
    FollowOptions opts;
    opts.follow = f->follow;
    opts.on_disconnect = [&view](const Status& s) { view.Disconnected(s); return true; };
    return FollowEvents(c, f->job, opts, [&](const Json& ev) {
      if (f->all || ev.value("kind", "") == "output") view.Show(ev);
      return true;
    });
  });
}

Runner SetupFetch(CLI::App* sub, GlobalFlags* global) {
  struct Flags { std::string job, to; bool all = false; };
  auto f = std::make_shared<Flags>();
  sub->add_option("job", f->job, kJobHelp)->required();
  sub->add_option("--to", f->to, "folder to write into (default: ./<job id>)");
  sub->add_flag("--all", f->all,
                "also the files the job wrote in its working folder (into <folder>/work/)");
  return WithClient(global, [f](HttpClient& c) -> Status {
    YARD_ASSIGN_OR_RETURN(f->job, ResolveJob(c, f->job));
    std::string to = f->to.empty() ? f->job : f->to;
    YARD_ASSIGN_OR_RETURN(Json reply, c.Get("/v1/jobs/" + f->job + "/artifacts"));
    std::vector<std::pair<std::string, FileEntry>> entries;  // (dir, entry)
    std::map<std::string, uint64_t> left_out;  // the working folder's, without --all
    DownloadOptions options;
    for (const auto& a : reply["artifacts"]) {
      YARD_ASSIGN_OR_RETURN(FileEntry e, FileEntryFromJson(a["entry"]));
      std::string dir = a["dir"].get<std::string>();
      if (dir == "work" && !f->all) {
        left_out[e.path] = e.size;
        continue;
      }
      options.progress_total += e.size;
      entries.emplace_back(dir, std::move(e));
    }
    // One progress line for the whole fetch.
    std::unique_ptr<ProgressReporter> progress = StderrProgress("yard: fetching " + f->job);
    options.progress = progress.get();
    TransferStats stats;
    for (const auto& [dir, e] : entries) {
      Status s = DownloadEntry(c, e, to + "/" + dir, nullptr, &stats, options);
      if (!s.ok()) progress->Finish();
      YARD_RETURN_IF_ERROR(s);
      options.progress_offset += e.size;
    }
    progress->Finish();
    std::fprintf(stderr, "yard: fetched %llu files (%s) into %s\n",
                 static_cast<unsigned long long>(stats.files), HumanBytes(stats.bytes_total).c_str(),
                 to.c_str());
    if (!left_out.empty()) {
      std::string offer = WorkFilesOffer(f->job, left_out);
      std::fwrite(offer.data(), 1, offer.size(), stderr);
    }
    return Status::Ok();
  });
}

Runner SetupCancel(CLI::App* sub, GlobalFlags* global) {
  auto job = std::make_shared<std::string>();
  sub->add_option("job", *job, kJobHelp)->required();
  return WithClient(global, [job](HttpClient& c) -> Status {
    YARD_ASSIGN_OR_RETURN(*job, ResolveJob(c, *job));
    YARD_ASSIGN_OR_RETURN(Json reply, c.Post("/v1/jobs/" + *job + "/cancel", Json::object()));
    std::fprintf(stderr, "yard: %s is %s%s\n", job->c_str(), reply["job"]["state"].get<std::string>().c_str(),
                 reply["job"]["state"] == "running" ? " (cancel sent)" : "");
    return Status::Ok();
  });
}

Runner SetupMachines(CLI::App* sub, GlobalFlags* global) {
  struct Flags { bool json = false, catalog = false, all = false; };
  auto f = std::make_shared<Flags>();
  sub->add_flag("--json", f->json, "print JSON");
  sub->add_flag("--catalog", f->catalog, "print the machine catalog (JSON)");
  sub->add_flag("--all", f->all, "include ended instances");
  return WithClient(global, [f](HttpClient& c) -> Status {
    YARD_ASSIGN_OR_RETURN(Json reply, c.Get(std::string("/v1/machines") + (f->all ? "?all=1" : "")));
    if (f->catalog) {
      Json types = reply["types"];
      for (auto& t : types) t.erase("available");
      std::cout << Json{{"version", 1}, {"types", types}}.dump(2) << "\n";
      return Status::Ok();
    }
    if (f->json) { std::cout << reply.dump(2) << "\n"; return Status::Ok(); }
    std::vector<std::vector<std::string>> types = {{"TYPE", "PROVIDER", "CPUS", "GPUS", "SPOT $/H", "ON-DEMAND $/H", "AVAILABLE"}};
    for (const auto& t : reply["types"])
      types.push_back({t["name"], t["provider"], Cell(t, "cpus"), Cell(t, "gpus"), Cell(t, "spot_price"),
                       Cell(t, "on_demand_price"), Cell(t, "available")});
    PrintTable(types);
    std::printf("\n");
    std::vector<std::vector<std::string>> insts = {{"INSTANCE", "TYPE", "MARKET", "STATE", "AGE", "IDLE", "$/H NOW", "JOB"}};
    bool slurm = false;  // a SLURM JOB column when any instance is an allocation
    bool ec2 = false;    // an EC2 ID column when any is an EC2 instance
    for (const auto& i : reply["instances"]) {
      slurm |= i.contains("slurm_job_id");
      ec2 |= i.contains("ec2_instance_id");
    }
    if (slurm) insts[0].push_back("SLURM JOB");
    if (ec2) insts[0].push_back("EC2 ID");
    for (const auto& i : reply["instances"]) {
      char price[32];
      std::snprintf(price, sizeof(price), "%.4f", i.value("price_per_hour", 0.0));
      insts.push_back({i["id"], i["machine_type"], Cell(i, "market"), i["state"], FormatDuration(i["age_s"]),
                       FormatDuration(i["idle_s"]), price, Cell(i, "job")});
      if (slurm) insts.back().push_back(Cell(i, "slurm_job_id"));
      if (ec2) insts.back().push_back(Cell(i, "ec2_instance_id"));
    }
    if (insts.size() == 1) std::printf("no instances\n");
    else PrintTable(insts);
    return Status::Ok();
  });
}

}  // namespace yard::cli

namespace yard::cli {

Runner SetupDown(CLI::App* sub, GlobalFlags* global) {
  struct Flags { std::string instance; bool all = false; };
  auto f = std::make_shared<Flags>();
  sub->add_option("instance", f->instance, "the cooling instance to end");
  sub->add_flag("--all", f->all, "end all your idle and cooling instances");
  return WithClient(global, [f](HttpClient& c) -> Status {
    if (f->instance.empty() == !f->all)
      return InvalidArgument("name one INSTANCE or give --all (see `yard machines`)");
    YARD_ASSIGN_OR_RETURN(Json reply, c.Post("/v1/instances/down", {{"instance", f->instance}}));
    for (const auto& id : reply["ended"]) std::printf("ended %s\n", id.get<std::string>().c_str());
    if (reply["ended"].empty()) std::printf("no idle or cooling instances\n");
    return Status::Ok();
  });
}

Runner SetupCost(CLI::App* sub, GlobalFlags* global) {
  auto json = std::make_shared<bool>(false);
  sub->add_flag("--json", *json, "print JSON");
  return WithClient(global, [json](HttpClient& c) -> Status {
    YARD_ASSIGN_OR_RETURN(Json cost, c.Get("/v1/cost"));
    if (*json) { std::cout << cost.dump(2) << "\n"; return Status::Ok(); }
    auto money = [](double v) { char b[32]; std::snprintf(b, sizeof(b), "$%.4f", v); return std::string(b); };
    std::vector<std::vector<std::string>> rows = {{"INSTANCE", "JOB", "KIND", "MARKET", "FROM", "SECONDS", "COST"}};
    for (const auto& e : cost["entries"])
      rows.push_back({e["instance"], e["job"].get<std::string>().empty() ? "-" : e["job"].get<std::string>(),
                      e["kind"].get<std::string>() + (e["open"].get<bool>() ? " (now)" : ""), e["market"],
                      FormatTime(e["start"]), std::to_string(static_cast<long>(e["seconds"].get<double>())),
                      money(e["cost"])});
    PrintTable(rows);
    std::printf("\n");
    std::vector<std::vector<std::string>> jobs = {{"JOB", "COST"}};
    for (const auto& [job, v] : cost["by_job"].items()) jobs.push_back({job, money(v)});
    PrintTable(jobs);
    std::printf("\n");
    std::vector<std::vector<std::string>> days = {{"DAY", "COST"}};
    for (const auto& [day, v] : CostByDay(cost["entries"])) days.push_back({day, money(v)});
    PrintTable(days);
    std::printf("\n");
    for (const auto& [kind, v] : cost["by_kind"].items()) std::printf("%-8s %s\n", kind.c_str(), money(v).c_str());
    std::printf("total    %s\n", money(cost["total"]).c_str());
    return Status::Ok();
  });
}

}  // namespace yard::cli
