// Subcommands of `yard`. Each Setup* declares its flags on a CLI11
// subcommand and returns the function that runs it (returning the exit
// code). Exit codes: 0 ok, 1 failure, 2 usage, 70 (kExitUnexpected) an
// answer or state the command did not expect; `fit` returns the job's.
#pragma once

#include <functional>
#include <string>

#include <CLI/CLI.hpp>

#include "client/connection.h"
#include "client/http_client.h"

namespace yard::cli {

struct GlobalFlags {
  std::string server;
  std::string home;
  ConnectionOptions Connection() const {
    ConnectionOptions o;
    o.server = server;
    o.home = home;
    return o;
  }
};

using Runner = std::function<int()>;

Runner SetupFit(CLI::App* sub, GlobalFlags* global);
Runner SetupSubmit(CLI::App* sub, GlobalFlags* global);
Runner SetupJobs(CLI::App* sub, GlobalFlags* global);
Runner SetupStatus(CLI::App* sub, GlobalFlags* global);
Runner SetupLogs(CLI::App* sub, GlobalFlags* global);
Runner SetupFetch(CLI::App* sub, GlobalFlags* global);
Runner SetupCancel(CLI::App* sub, GlobalFlags* global);
Runner SetupMachines(CLI::App* sub, GlobalFlags* global);
Runner SetupDown(CLI::App* sub, GlobalFlags* global);
Runner SetupCost(CLI::App* sub, GlobalFlags* global);
Runner SetupServer(CLI::App* sub, GlobalFlags* global);
Runner SetupAgent(CLI::App* sub, GlobalFlags* global);
Runner SetupToken(CLI::App* sub, GlobalFlags* global);
Runner SetupReplay(CLI::App* sub, GlobalFlags* global);     // cmd_replay.cc
Runner SetupInit(CLI::App* sub, GlobalFlags* global);       // cmd_init.cc
Runner SetupCopy(CLI::App* sub, GlobalFlags* global);       // cmd_copy.cc
Runner SetupDashboard(CLI::App* sub, GlobalFlags* global);  // cmd_dashboard.cc

// The id of the job `given` names: an id, a unique start of one (with or
// without "job-"), or "-" for the caller's newest job.
StatusOr<std::string> ResolveJob(const HttpClient& client, const std::string& given);

// Prints "yard: <message>" to stderr and returns 1.
int Fail(const std::string& message);
// The exit code of a command stopped by what it did not expect (EX_SOFTWARE):
// an answer of another shape (client/reply.h), a server's internal error,
// an exception nobody caught.
constexpr int kExitUnexpected = 70;
// Prints that `command` stopped on `what`, which it did not expect, and
// what to do (per role: CLI, server, agent); returns kExitUnexpected.
int StoppedUnexpectedly(const std::string& command, const std::string& what);
// The exit code of a command's outcome: 0 for OK; for kInternal (an answer
// of an unexpected shape, a server's internal error) StoppedUnexpectedly's
// line and kExitUnexpected; else Fail(message), 1.
int ExitFor(const std::string& command, const Status& s);
// Connects or prints why not; nullptr on failure.
std::unique_ptr<HttpClient> ConnectOrReport(const GlobalFlags& global);

}  // namespace yard::cli
