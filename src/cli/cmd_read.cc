// The read and control commands: jobs, status, logs, fetch, cancel, machines.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <map>

#include "cli/commands.h"
#include "cli/job_view.h"
#include "cli/suggest.h"
#include "client/follow.h"
#include "client/reply.h"
#include "client/transfer.h"
#include "common/manifest.h"

namespace yard::cli {
namespace {

// Runs `body` with a connected client; reports its error as ExitFor does.
Runner WithClient(CLI::App* sub, GlobalFlags* global, std::function<Status(HttpClient&)> body) {
  return [command = sub->get_name(), global, body] {
    auto client = ConnectOrReport(*global);
    if (!client) return 1;
    return ExitFor(command, body(*client));
  };
}

// Cost per local calendar day ("2026-12-06"), each interval counted on the
// day it began.
StatusOr<std::map<std::string, double>> CostByDay(const std::vector<Reply>& entries) {
  std::map<std::string, double> days;
  for (const Reply& e : entries) {
    YARD_ASSIGN_OR_RETURN(double start, e.Get<double>("start"));
    YARD_ASSIGN_OR_RETURN(double cost, e.Get<double>("cost"));
    days[FormatTime(start).substr(0, 10)] += cost;
  }
  return days;
}

constexpr const char* kJobHelp = "job id (a unique start of it will do; '-': your newest job)";

// A table cell of any value: "-" for absent, null or "".
std::string Cell(const Reply& r, const char* key) {
  const Json& j = r.json();
  if (!j.contains(key) || j[key].is_null()) return "-";
  const Json& v = j[key];
  return v.is_string() ? (v.get<std::string>().empty() ? "-" : v.get<std::string>()) : v.dump();
}

const std::vector<std::string>& JobStates() {
  static const std::vector<std::string> kStates = {"waiting",   "requesting", "starting", "running",
                                                   "succeeded", "failed",     "cancelled"};
  return kStates;
}

Status CheckState(const std::string& state) {
  const auto& states = JobStates();
  if (state.empty() || std::find(states.begin(), states.end(), state) != states.end())
    return Status::Ok();
  return InvalidArgument("--state " + state + " is not a job state" + DidYouMean(state, states) +
                         " (states: " + JoinNames(states) + ")");
}

}  // namespace

StatusOr<std::string> ResolveJob(const HttpClient& client, const std::string& given) {
  if (given == "-") {
    YARD_ASSIGN_OR_RETURN(Reply newest, GetReply(client, "/v1/jobs?limit=1"));
    YARD_ASSIGN_OR_RETURN(std::vector<Reply> jobs, newest.Array("jobs"));
    if (jobs.empty()) return NotFound("you have no jobs yet, so '-' (your newest job) names none");
    return jobs[0].Get<std::string>("id");
  }
  StatusOr<Json> exact = client.Get("/v1/jobs/" + given);
  if (exact.ok() || exact.status().code() != Code::kNotFound) {
    if (!exact.ok()) return exact.status();
    return given;
  }
  YARD_ASSIGN_OR_RETURN(Reply all, GetReply(client, "/v1/jobs?limit=100000"));
  YARD_ASSIGN_OR_RETURN(std::vector<Reply> jobs, all.Array("jobs"));
  std::vector<std::string> matches;
  for (const Reply& j : jobs) {
    YARD_ASSIGN_OR_RETURN(std::string id, j.Get<std::string>("id"));
    if (id.rfind(given, 0) == 0 || id.rfind("job-" + given, 0) == 0) matches.push_back(id);
  }
  if (matches.size() == 1) return matches[0];
  if (matches.empty())
    return NotFound("no job " + given +
                    " of yours (`yard jobs` lists them; a unique start of an id "
                    "or '-' for the newest will do)");
  if (matches.size() > 5) matches.resize(5);
  return InvalidArgument("'" + given + "' starts several job ids (" + JoinNames(matches) +
                         "...): give more of it");
}

namespace {

// A row of `yard jobs`.
StatusOr<std::vector<std::string>> JobRow(const Reply& j) {
  YARD_ASSIGN_OR_RETURN(std::string id, j.Get<std::string>("id"));
  YARD_ASSIGN_OR_RETURN(std::string state, j.Get<std::string>("state"));
  YARD_ASSIGN_OR_RETURN(double created, j.Get<double>("created_at"));
  return std::vector<std::string>{id, state, Cell(j, "machine_type"), FormatTime(created),
                                  Cell(j, "description")};
}

// The rows of `yard status`.
StatusOr<std::vector<std::vector<std::string>>> StatusRows(const Reply& j) {
  YARD_ASSIGN_OR_RETURN(std::string id, j.Get<std::string>("id"));
  YARD_ASSIGN_OR_RETURN(std::string state, j.Get<std::string>("state"));
  YARD_ASSIGN_OR_RETURN(Reply command, j.Field("command"));
  YARD_ASSIGN_OR_RETURN(Reply machines, j.Field("machines"));
  YARD_ASSIGN_OR_RETURN(double created, j.Get<double>("created_at"));
  YARD_ASSIGN_OR_RETURN(double updated, j.Get<double>("updated_at"));
  return std::vector<std::vector<std::string>>{{"job", id},
                                               {"state", state},
                                               {"description", Cell(j, "description")},
                                               {"command", command.json().dump()},
                                               {"machines", machines.json().dump()},
                                               {"instance", Cell(j, "instance")},
                                               {"machine type", Cell(j, "machine_type")},
                                               {"created", FormatTime(created)},
                                               {"updated", FormatTime(updated)},
                                               {"exit code", Cell(j, "exit_code")},
                                               {"message", Cell(j, "message")}};
}

}  // namespace

Runner SetupJobs(CLI::App* sub, GlobalFlags* global) {
  struct Flags {
    std::string state, search;
    int limit = 50;
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  sub->add_option("--state", f->state, "only jobs in this state");
  sub->add_option("--search,-s", f->search, "only jobs whose description contains this");
  sub->add_option("--limit", f->limit, "at most this many")->capture_default_str();
  sub->add_flag("--json", f->json, "print JSON");
  return WithClient(sub, global, [f](HttpClient& c) -> Status {
    YARD_RETURN_IF_ERROR(CheckState(f->state));
    std::string q = "/v1/jobs?limit=" + std::to_string(f->limit);
    if (!f->state.empty()) q += "&state=" + f->state;
    if (!f->search.empty()) q += "&q=" + f->search;
    YARD_ASSIGN_OR_RETURN(Reply reply, GetReply(c, q));
    YARD_ASSIGN_OR_RETURN(Reply jobs, reply.Field("jobs"));
    if (f->json) {
      std::cout << jobs.json().dump(2) << "\n";
      return Status::Ok();
    }
    YARD_ASSIGN_OR_RETURN(std::vector<Reply> listed, jobs.Elements());
    std::vector<std::vector<std::string>> rows = {
        {"JOB", "STATE", "MACHINE", "CREATED", "DESCRIPTION"}};
    for (const Reply& j : listed) {
      YARD_ASSIGN_OR_RETURN(std::vector<std::string> row, JobRow(j));
      rows.push_back(std::move(row));
    }
    PrintTable(rows);
    return Status::Ok();
  });
}

Runner SetupStatus(CLI::App* sub, GlobalFlags* global) {
  struct Flags {
    std::string job;
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  sub->add_option("job", f->job, kJobHelp)->required();
  sub->add_flag("--json", f->json, "print JSON");
  return WithClient(sub, global, [f](HttpClient& c) -> Status {
    YARD_ASSIGN_OR_RETURN(f->job, ResolveJob(c, f->job));
    YARD_ASSIGN_OR_RETURN(Reply reply, GetReply(c, "/v1/jobs/" + f->job));
    YARD_ASSIGN_OR_RETURN(Reply j, reply.Field("job"));
    if (f->json) {
      std::cout << j.json().dump(2) << "\n";
      return Status::Ok();
    }
    YARD_ASSIGN_OR_RETURN(auto rows, StatusRows(j));
    PrintTable(rows);
    return Status::Ok();
  });
}

Runner SetupLogs(CLI::App* sub, GlobalFlags* global) {
  struct Flags {
    std::string job;
    bool follow = false;
    bool all = false;
  };
  auto f = std::make_shared<Flags>();
  sub->add_option("job", f->job, kJobHelp)->required();
  sub->add_flag("--follow,-f", f->follow, "keep printing until the job ends");
  sub->add_flag("--events", f->all, "also show Trainyard's events (states, decisions, metrics)");
  return WithClient(sub, global, [f](HttpClient& c) -> Status {
    YARD_ASSIGN_OR_RETURN(f->job, ResolveJob(c, f->job));
    LiveJobView view(f->job);
    FollowOptions opts;
    opts.follow = f->follow;
    opts.on_disconnect = [&view](const Status& s) {
      view.Disconnected(s);
      return true;
    };
    return FollowEvents(c, f->job, opts, [&](const Json& ev) {
      if (f->all || ev.value("kind", "") == "output") view.Show(ev);
      return true;
    });
  });
}

Runner SetupFetch(CLI::App* sub, GlobalFlags* global) {
  struct Flags {
    std::string job, to;
    bool all = false;
  };
  auto f = std::make_shared<Flags>();
  sub->add_option("job", f->job, kJobHelp)->required();
  sub->add_option("--to", f->to, "folder to write into (default: ./<job id>)");
  sub->add_flag("--all", f->all,
                "also the files the job wrote in its working folder (into <folder>/work/)");
  return WithClient(sub, global, [f](HttpClient& c) -> Status {
    YARD_ASSIGN_OR_RETURN(f->job, ResolveJob(c, f->job));
    std::string to = f->to.empty() ? f->job : f->to;
    YARD_ASSIGN_OR_RETURN(Reply reply, GetReply(c, "/v1/jobs/" + f->job + "/artifacts"));
    YARD_ASSIGN_OR_RETURN(std::vector<Reply> artifacts, reply.Array("artifacts"));
    std::vector<std::pair<std::string, FileEntry>> entries;  // (dir, entry)
    std::map<std::string, uint64_t> left_out;                // the working folder's, without --all
    DownloadOptions options;
    for (const Reply& a : artifacts) {
      YARD_ASSIGN_OR_RETURN(Reply entry, a.Field("entry"));
      YARD_ASSIGN_OR_RETURN(FileEntry e, FileEntryFromJson(entry.json()));
      YARD_ASSIGN_OR_RETURN(std::string dir, a.Get<std::string>("dir"));
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
                 static_cast<unsigned long long>(stats.files),
                 HumanBytes(stats.bytes_total).c_str(), to.c_str());
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
  return WithClient(sub, global, [job](HttpClient& c) -> Status {
    YARD_ASSIGN_OR_RETURN(*job, ResolveJob(c, *job));
    YARD_ASSIGN_OR_RETURN(Reply reply,
                          PostReply(c, "/v1/jobs/" + *job + "/cancel", Json::object()));
    YARD_ASSIGN_OR_RETURN(Reply j, reply.Field("job"));
    YARD_ASSIGN_OR_RETURN(std::string state, j.Get<std::string>("state"));
    std::fprintf(stderr, "yard: %s is %s%s\n", job->c_str(), state.c_str(),
                 state == "running" ? " (cancel sent)" : "");
    return Status::Ok();
  });
}

namespace {

// `yard machines --catalog`: the types without their availability.
StatusOr<Json> Catalog(const Reply& reply) {
  YARD_ASSIGN_OR_RETURN(std::vector<Reply> listed, reply.Array("types"));
  Json types = Json::array();
  for (const Reply& t : listed) {
    YARD_ASSIGN_OR_RETURN(Json type, t.AsObject());
    type.erase("available");
    types.push_back(std::move(type));
  }
  return Json{{"version", 1}, {"types", types}};
}

StatusOr<std::vector<std::vector<std::string>>> TypeRows(const Reply& reply) {
  YARD_ASSIGN_OR_RETURN(std::vector<Reply> listed, reply.Array("types"));
  std::vector<std::vector<std::string>> rows = {
      {"TYPE", "PROVIDER", "CPUS", "GPUS", "SPOT $/H", "ON-DEMAND $/H", "AVAILABLE"}};
  for (const Reply& t : listed) {
    YARD_ASSIGN_OR_RETURN(std::string name, t.Get<std::string>("name"));
    YARD_ASSIGN_OR_RETURN(std::string provider, t.Get<std::string>("provider"));
    rows.push_back({name, provider, Cell(t, "cpus"), Cell(t, "gpus"), Cell(t, "spot_price"),
                    Cell(t, "on_demand_price"), Cell(t, "available")});
  }
  return rows;
}

StatusOr<std::vector<std::string>> InstanceRow(const Reply& i, bool slurm, bool ec2) {
  YARD_ASSIGN_OR_RETURN(std::string id, i.Get<std::string>("id"));
  YARD_ASSIGN_OR_RETURN(std::string type, i.Get<std::string>("machine_type"));
  YARD_ASSIGN_OR_RETURN(std::string state, i.Get<std::string>("state"));
  YARD_ASSIGN_OR_RETURN(double age, i.Get<double>("age_s"));
  YARD_ASSIGN_OR_RETURN(double idle, i.Get<double>("idle_s"));
  YARD_ASSIGN_OR_RETURN(double price_per_hour, i.GetOr<double>("price_per_hour", 0.0));
  char price[32];
  std::snprintf(price, sizeof(price), "%.4f", price_per_hour);
  std::vector<std::string> row = {
      id,    type,          Cell(i, "market"), state, FormatDuration(age), FormatDuration(idle),
      price, Cell(i, "job")};
  if (slurm) row.push_back(Cell(i, "slurm_job_id"));
  if (ec2) row.push_back(Cell(i, "ec2_instance_id"));
  return row;
}

StatusOr<std::vector<std::vector<std::string>>> InstanceRows(const Reply& reply) {
  YARD_ASSIGN_OR_RETURN(std::vector<Reply> listed, reply.Array("instances"));
  std::vector<std::vector<std::string>> rows = {
      {"INSTANCE", "TYPE", "MARKET", "STATE", "AGE", "IDLE", "$/H NOW", "JOB"}};
  bool slurm = false;  // a SLURM JOB column when any instance is an allocation
  bool ec2 = false;    // an EC2 ID column when any is an EC2 instance
  for (const Reply& i : listed) {
    slurm |= i.Has("slurm_job_id");
    ec2 |= i.Has("ec2_instance_id");
  }
  if (slurm) rows[0].push_back("SLURM JOB");
  if (ec2) rows[0].push_back("EC2 ID");
  for (const Reply& i : listed) {
    YARD_ASSIGN_OR_RETURN(std::vector<std::string> row, InstanceRow(i, slurm, ec2));
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace

Runner SetupMachines(CLI::App* sub, GlobalFlags* global) {
  struct Flags {
    bool json = false, catalog = false, all = false;
  };
  auto f = std::make_shared<Flags>();
  sub->add_flag("--json", f->json, "print JSON");
  sub->add_flag("--catalog", f->catalog, "print the machine catalog (JSON)");
  sub->add_flag("--all", f->all, "include ended instances");
  return WithClient(sub, global, [f](HttpClient& c) -> Status {
    YARD_ASSIGN_OR_RETURN(Reply reply,
                          GetReply(c, std::string("/v1/machines") + (f->all ? "?all=1" : "")));
    if (f->catalog) {
      YARD_ASSIGN_OR_RETURN(Json catalog, Catalog(reply));
      std::cout << catalog.dump(2) << "\n";
      return Status::Ok();
    }
    if (f->json) {
      std::cout << reply.json().dump(2) << "\n";
      return Status::Ok();
    }
    YARD_ASSIGN_OR_RETURN(auto types, TypeRows(reply));
    YARD_ASSIGN_OR_RETURN(auto instances, InstanceRows(reply));
    PrintTable(types);
    std::printf("\n");
    if (instances.size() == 1)
      std::printf("no instances\n");
    else
      PrintTable(instances);
    return Status::Ok();
  });
}

}  // namespace yard::cli

namespace yard::cli {

Runner SetupDown(CLI::App* sub, GlobalFlags* global) {
  struct Flags {
    std::string instance;
    bool all = false;
  };
  auto f = std::make_shared<Flags>();
  sub->add_option("instance", f->instance, "the cooling instance to end");
  sub->add_flag("--all", f->all, "end all your idle and cooling instances");
  return WithClient(sub, global, [f](HttpClient& c) -> Status {
    if (f->instance.empty() == !f->all)
      return InvalidArgument("name one INSTANCE or give --all (see `yard machines`)");
    YARD_ASSIGN_OR_RETURN(Reply reply,
                          PostReply(c, "/v1/instances/down", {{"instance", f->instance}}));
    YARD_ASSIGN_OR_RETURN(std::vector<Reply> ended, reply.Array("ended"));
    for (const Reply& id : ended) {
      YARD_ASSIGN_OR_RETURN(std::string name, id.As<std::string>());
      std::printf("ended %s\n", name.c_str());
    }
    if (ended.empty()) std::printf("no idle or cooling instances\n");
    return Status::Ok();
  });
}

namespace {

std::string Money(double v) {
  char b[32];
  std::snprintf(b, sizeof(b), "$%.4f", v);
  return b;
}

StatusOr<std::vector<std::string>> CostRow(const Reply& e) {
  YARD_ASSIGN_OR_RETURN(std::string instance, e.Get<std::string>("instance"));
  YARD_ASSIGN_OR_RETURN(std::string job, e.Get<std::string>("job"));
  YARD_ASSIGN_OR_RETURN(std::string kind, e.Get<std::string>("kind"));
  YARD_ASSIGN_OR_RETURN(bool open, e.Get<bool>("open"));
  YARD_ASSIGN_OR_RETURN(std::string market, e.Get<std::string>("market"));
  YARD_ASSIGN_OR_RETURN(double start, e.Get<double>("start"));
  YARD_ASSIGN_OR_RETURN(double seconds, e.Get<double>("seconds"));
  YARD_ASSIGN_OR_RETURN(double cost, e.Get<double>("cost"));
  return std::vector<std::string>{
      instance,   job.empty() ? "-" : job, kind + (open ? " (now)" : ""),
      market,     FormatTime(start),       std::to_string(static_cast<long>(seconds)),
      Money(cost)};
}

// Rows of (name, money) for the members of the object `key` ("by_job").
StatusOr<std::vector<std::vector<std::string>>> MoneyRows(const Reply& cost, const char* key) {
  YARD_ASSIGN_OR_RETURN(Reply object, cost.Field(key));
  YARD_ASSIGN_OR_RETURN(auto members, object.Members());
  std::vector<std::vector<std::string>> rows;
  for (const auto& [name, v] : members) {
    YARD_ASSIGN_OR_RETURN(double amount, v.As<double>());
    rows.push_back({name, Money(amount)});
  }
  return rows;
}

// The tables of `yard cost`: intervals, per job, per day, per kind, total.
Status PrintCost(const Reply& cost) {
  YARD_ASSIGN_OR_RETURN(std::vector<Reply> entries, cost.Array("entries"));
  std::vector<std::vector<std::string>> rows = {
      {"INSTANCE", "JOB", "KIND", "MARKET", "FROM", "SECONDS", "COST"}};
  for (const Reply& e : entries) {
    YARD_ASSIGN_OR_RETURN(std::vector<std::string> row, CostRow(e));
    rows.push_back(std::move(row));
  }
  std::vector<std::vector<std::string>> jobs = {{"JOB", "COST"}};
  YARD_ASSIGN_OR_RETURN(auto by_job, MoneyRows(cost, "by_job"));
  jobs.insert(jobs.end(), by_job.begin(), by_job.end());
  std::vector<std::vector<std::string>> days = {{"DAY", "COST"}};
  YARD_ASSIGN_OR_RETURN(auto by_day, CostByDay(entries));
  for (const auto& [day, v] : by_day) days.push_back({day, Money(v)});
  YARD_ASSIGN_OR_RETURN(auto by_kind, MoneyRows(cost, "by_kind"));
  YARD_ASSIGN_OR_RETURN(double total, cost.Get<double>("total"));
  PrintTable(rows);
  std::printf("\n");
  PrintTable(jobs);
  std::printf("\n");
  PrintTable(days);
  std::printf("\n");
  for (const auto& row : by_kind) std::printf("%-8s %s\n", row[0].c_str(), row[1].c_str());
  std::printf("total    %s\n", Money(total).c_str());
  return Status::Ok();
}

}  // namespace

Runner SetupCost(CLI::App* sub, GlobalFlags* global) {
  auto json = std::make_shared<bool>(false);
  sub->add_flag("--json", *json, "print JSON");
  return WithClient(sub, global, [json](HttpClient& c) -> Status {
    YARD_ASSIGN_OR_RETURN(Reply cost, GetReply(c, "/v1/cost"));
    if (*json) {
      std::cout << cost.json().dump(2) << "\n";
      return Status::Ok();
    }
    return PrintCost(cost);
  });
}

}  // namespace yard::cli
