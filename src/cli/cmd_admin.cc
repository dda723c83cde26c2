// `yard server`, `yard agent`, `yard token`: running the roles.
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <thread>

#include "agent/agent.h"
#include "agent/agent_http.h"
#include "agent/sandbox.h"
#include "agent/server_pin.h"
#include "cli/commands.h"
#include "cli/job_view.h"
#include "client/connection.h"
#include "client/reply.h"
#include "common/clock.h"
#include "common/files.h"
#include "common/hashing.h"
#include "common/process.h"
#include "common/tls.h"
#include "providers/local_provider.h"
#include "server/server.h"
#include "server/token_auth.h"
#include "store/store.h"

namespace yard::cli {

int Fail(const std::string& message) {
  std::fprintf(stderr, "yard: %s\n", message.c_str());
  return 1;
}

namespace {

// What to do after `command` stopped on something it did not expect.
std::string AdviceAfterUnexpected(const std::string& command) {
  if (command == "agent")
    return "The server counts this instance lost once its heartbeats stop and runs its job again; "
           "check that "
           "this agent and the server are of the same Trainyard version, and report it if they are";
  if (command == "server")
    return "Start it again (`yard server`): jobs and instances are kept in its store; report it, "
           "with the "
           "server's log";
  return "Jobs already submitted are not affected (`yard jobs` lists them); check that "
         "--server/$YARD_SERVER "
         "is a Trainyard server of this version, and report it if it is";
}

}  // namespace

int StoppedUnexpectedly(const std::string& command, const std::string& what) {
  std::string who = command.empty() ? "yard" : "yard " + command;
  std::fprintf(stderr, "%s: stopped on an unexpected answer or state (%s). %s\n", who.c_str(),
               what.c_str(), AdviceAfterUnexpected(command).c_str());
  return kExitUnexpected;
}

int ExitFor(const std::string& command, const Status& s) {
  if (s.ok()) return 0;
  if (s.code() != Code::kInternal) return Fail(s.message());
  // The message says what was wrong (a reply's names the route and the
  // field, and says to check the server's version).
  std::fprintf(
      stderr,
      "yard %s: stopped on an unexpected answer or state: %s. Jobs already submitted are not "
      "affected (`yard jobs` lists them)\n",
      command.c_str(), s.message().c_str());
  return kExitUnexpected;
}

std::unique_ptr<HttpClient> ConnectOrReport(const GlobalFlags& global) {
  StatusOr<std::unique_ptr<HttpClient>> c = Connect(global.Connection());
  if (!c.ok()) {
    Fail(c.status().message());
    return nullptr;
  }
  if (global.server.empty() && EnvOr("YARD_SERVER", "").empty()) {
    std::string note =
        EmbeddedServerOfAnotherBuild(global.home.empty() ? DefaultYardHome() : global.home);
    if (!note.empty()) std::fprintf(stderr, "yard: warning: %s\n", note.c_str());
  }
  return std::move(c).value();
}

namespace {
// docs/operations.md, "A shared server with TLS".
void AddTlsOptions(CLI::App* sub, ServerOptions* o) {
  sub->add_option("--tls", o->tls_mode,
                  "'self-signed': serve HTTPS with a certificate made once under "
                  "$YARD_HOME/tls (its fingerprint is printed for clients to pin)");
  sub->add_option("--tls-cert", o->tls_cert,
                  "serve HTTPS with this certificate (PEM, chain allowed)");
  sub->add_option("--tls-key", o->tls_key, "the private key of --tls-cert (PEM, unencrypted)");
  sub->add_flag("--insecure-http", o->insecure_http,
                "allow plain HTTP on a --host beyond loopback (tokens and data in clear)");
}
}  // namespace

Runner SetupServer(CLI::App* sub, GlobalFlags* global) {
  auto o = std::make_shared<ServerOptions>();
  sub->add_option("--host", o->host, "address to listen on")->capture_default_str();
  sub->add_option("--port", o->port, "port (0: the last one if free, else any)");
  sub->add_option("--default-machine", o->default_machine, "machine type for jobs that name none")
      ->capture_default_str();
  sub->add_option("--heartbeat-timeout", o->heartbeat_timeout_s,
                  "seconds without a heartbeat before an instance is lost")
      ->capture_default_str();
  sub->add_option("--provisioning-timeout", o->provisioning_timeout_s,
                  "seconds a granted instance may take to register before it is ended")
      ->capture_default_str();
  sub->add_option("--catalog", o->catalog_file,
                  "machine catalog file (default: $YARD_HOME/catalog.json)");
  sub->add_option("--max-active-jobs", o->max_active_jobs, "per-user limit of active jobs")
      ->capture_default_str();
  sub->add_option("--max-active-instances", o->max_active_instances,
                  "per-user limit of instances (cooling ones included)")
      ->capture_default_str();
  sub->add_option("--quota", o->user_quotas, "per-user override USER=JOBS,INSTANCES (repeatable)");
  sub->add_option("--max-requests-in-flight", o->max_requests_in_flight,
                  "per-user limit of API calls being handled at once (past it: 429)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--baseline", o->baseline_s,
                  "seconds a cooling spot instance stays at spot price")
      ->capture_default_str();
  sub->add_option("--unit-percentage", o->unit_percentage,
                  "then its price rises by this fraction of (on-demand - spot) per minute")
      ->capture_default_str();
  sub->add_option("--max-job-output-mb", o->max_job_output_mb,
                  "output stored per job; past it, a marker line and the rest dropped (0: no cap)")
      ->capture_default_str();
  sub->add_option("--blob-grace-hours", o->blob_grace_hours,
                  "remove chunks that no job names and nobody used for this long (0: never)")
      ->capture_default_str();
  AddTlsOptions(sub, o.get());
  return [o, global] {
    o->home = global->home.empty() ? DefaultYardHome() : global->home;
    return RunServer(*o);
  };
}

namespace {

Status PinToCpus(const std::string& list) {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    CPU_SET(std::stoi(item), &set);
  }
  if (CPU_COUNT(&set) == 0) return Status::Ok();
  if (sched_setaffinity(0, sizeof(set), &set) != 0) return ErrnoStatus("sched_setaffinity " + list);
  return Status::Ok();
}

UrlResolver ResolverFor(const std::string& url, const std::string& url_file) {
  if (!url.empty()) return [url]() -> StatusOr<std::string> { return url; };
  return ServerFileResolver(url_file);
}

// Stops `agent` on SIGTERM/SIGINT.
void StopOnSignal(Agent* agent) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set, agent] {
    int sig = 0;
    sigwait(&set, &sig);
    agent->Stop();
  }).detach();
}

// Confines jobs when this machine can; else each job is told why not.
void DecideConfinement(const std::string& dir, AgentConfig* config) {
  std::string jobs = dir + "/jobs";
  Status made = MakeDirs(jobs);
  Status works = made.ok() ? CheckSandboxWorks(jobs) : made;
  config->sandbox = works.ok();
  if (!works.ok()) {
    config->unconfined_reason = works.message();
    std::fprintf(stderr, "yard agent: jobs run unconfined: %s\n", works.message().c_str());
  }
}

// One JSON line per spool file of an instance folder `dir`, for the server
// to tell which it holds (SshProvider): {"file", "job", "attempt", "records"}.
int PrintSpoolReport(const std::string& dir) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir + "/spool", ec)) {
    std::optional<SpoolFileInfo> info = ReadSpoolFileInfo(entry.path().string());
    if (!info) continue;
    Json line = {{"file", entry.path().filename().string()},
                 {"job", info->job},
                 {"attempt", info->attempt},
                 {"records", info->records}};
    std::printf("%s\n", line.dump(-1, ' ', false, Json::error_handler_t::replace).c_str());
  }
  return 0;
}

}  // namespace

Runner SetupAgent(CLI::App* sub, GlobalFlags* global) {
  struct Flags {
    std::string instance, dir, server_file, cpus;
    bool sandbox = false;
    bool sandbox_if_possible = false;
    bool sandbox_show_host = false;
    bool spool_report = false;
    std::vector<std::string> sandbox_hide;
    std::string server_blobs;
  };
  auto f = std::make_shared<Flags>();
  sub->add_option("--instance", f->instance, "instance id given by the provider")->required();
  sub->add_option("--dir", f->dir, "this agent's work folder")->required();
  sub->add_option("--server-file", f->server_file, "read the server URL from this JSON file");
  sub->add_option("--cpus", f->cpus, "pin to these cores (comma list)");
  sub->add_flag("--sandbox", f->sandbox, "confine jobs with bubblewrap (local instances)");
  sub->add_flag("--sandbox-if-possible", f->sandbox_if_possible,
                "confine jobs when this machine can (SSH hosts); say why not when it cannot");
  sub->add_option("--sandbox-hide", f->sandbox_hide, "a folder jobs never see (repeatable)");
  sub->add_flag("--sandbox-show-host", f->sandbox_show_host,
                "confined jobs see the host's files read-only (its data), not the system alone");
  sub->add_option(
      "--server-blobs", f->server_blobs,
      "the server's blob store, when on this machine: bundle chunks are copied from it");
  sub->add_flag(
      "--spool-report", f->spool_report,
      "print what --dir's spool holds (a JSON line per file) and exit; the ssh provider's "
      "clean-up of an ended instance");
  return [f, global] {
    if (f->spool_report) return PrintSpoolReport(f->dir);
    // The bootstrap leaves our environment (and /proc/PID/environ) at once:
    // nothing we start inherits it, nothing on the machine reads it from us.
    std::string bootstrap = TakeSecretEnv("YARD_AGENT_TOKEN");
    if (bootstrap.empty() && ::access((f->dir + "/credential").c_str(), R_OK) != 0)
      return Fail(
          "YARD_AGENT_TOKEN is not set: an agent needs its instance's bootstrap credential");
    StatusOr<std::string> credential = LoadOrCreateCredential(f->dir);
    if (!credential.ok())
      return Fail("agent " + f->instance + ": " + credential.status().message());
    if (global->server.empty() && f->server_file.empty())
      return Fail("give --server URL or --server-file FILE");
    Status s = PinToCpus(f->cpus);
    if (!s.ok()) return Fail(s.message());
    AgentConfig config;
    config.server = ResolverFor(global->server, f->server_file);
    // By the fingerprint its launch gave it, else by the one it kept at an
    // earlier start in this folder, else by the system's CAs.
    StatusOr<TlsTrust> trust = AgentServerTrust(f->dir, EnvOr("YARD_SERVER_FINGERPRINT", ""));
    if (!trust.ok()) return Fail("agent " + f->instance + ": " + trust.status().message());
    config.tls = *trust;
    config.token = *credential;
    config.bootstrap_token = bootstrap;
    config.instance_id = f->instance;
    config.work_dir = f->dir;
    config.yard_binary = SelfExecutable();
    config.resources = {{"cpus", f->cpus}};
    StatusOr<PreemptionOptions> preemption =
        PreemptionOptionsFromEnv([](const std::string& name) { return EnvOr(name.c_str(), ""); });
    if (!preemption.ok())
      return Fail("agent " + f->instance + ": " + preemption.status().message());
    config.preemption = *preemption;
    config.sandbox = f->sandbox;
    if (!f->sandbox && f->sandbox_if_possible) DecideConfinement(f->dir, &config);
    config.sandbox_hidden = f->sandbox_hide;
    config.sandbox_show_host = f->sandbox_show_host;
    config.server_blobs = f->server_blobs;
    Agent agent(std::move(config));
    StopOnSignal(&agent);
    s = agent.Run();
    if (!s.ok()) return Fail("agent " + f->instance + ": " + WithKeptPinAdvice(s, *trust, f->dir));
    return 0;
  };
}

namespace {

// The store of the server's home (`yard token` works on it directly, with
// or without a server running: a running server reads every change at its
// next call).
StatusOr<std::unique_ptr<Store>> OpenHomeStore(const GlobalFlags& global) {
  std::string home = global.home.empty() ? DefaultYardHome() : global.home;
  YARD_RETURN_IF_ERROR(MakeDirs(home));
  return Store::Open(home + "/state.db");
}

struct TokenFlags {
  std::string user;
  std::string scope = kScopeAdmin;
  std::string kind;
  std::string expires;
  std::string id;
  bool json = false;
};

// With a server set (--server or YARD_SERVER), `yard token` manages the
// caller's own tokens through the API (scope admin); otherwise every
// user's, on the home's store.
bool ServerIsSet(const GlobalFlags& global) {
  return !global.server.empty() || !EnvOr("YARD_SERVER", "").empty();
}

// The scope --scope/--kind ask for, or why not.
StatusOr<std::string> WantedScope(const TokenFlags& f) {
  if (f.kind == "agent")
    return InvalidArgument(
        "--kind agent is gone: each instance gets its own agent credential at launch "
        "(docs/api.md, \"Agent credentials\")");
  if (!f.kind.empty() && f.kind != "user" && f.kind != "metrics")
    return InvalidArgument(
        "--kind must be 'user' or 'metrics' (or use --scope read|submit|admin|metrics)");
  std::string scope = f.kind == "metrics" ? kScopeMetrics : f.scope;
  if (!IsScope(scope))
    return InvalidArgument(
        "--scope must be read (watch jobs, dashboards), submit (read + submit and cancel), "
        "admin (submit + manage tokens) or metrics (GET /metrics only); got '" +
        scope + "'");
  if (!f.expires.empty())
    YARD_RETURN_IF_ERROR(ParseTokenLifetime(f.expires).status().WithContext("--expires"));
  return scope;
}

int CreateRemote(const TokenFlags& f, const std::string& scope, const GlobalFlags& global) {
  if (!f.user.empty())
    return Fail("with a server set, `yard token create` makes a token for yourself: drop '" +
                f.user +
                "' (tokens of other users are made on the server's home: yard --home DIR token "
                "create USER)");
  std::unique_ptr<HttpClient> client = ConnectOrReport(global);
  if (!client) return 1;
  Json body = {{"scope", scope}};
  if (!f.expires.empty()) body["expires"] = f.expires;
  StatusOr<Reply> made = PostReply(*client, "/v1/tokens", body);
  StatusOr<std::string> token = made.ok() ? made->Get<std::string>("token") : made.status();
  if (!token.ok()) return ExitFor("token", token.status());
  std::cout << *token << "\n";
  return 0;
}

int CreateTokenCommand(const TokenFlags& f, const GlobalFlags& global) {
  StatusOr<std::string> scope = WantedScope(f);
  if (!scope.ok()) return Fail(scope.status().message());
  if (ServerIsSet(global)) return CreateRemote(f, *scope, global);
  if (f.user.empty()) return Fail("name the user: yard token create USER");
  double expires_at = f.expires.empty() ? 0 : RealClock().Now() + *ParseTokenLifetime(f.expires);
  StatusOr<std::unique_ptr<Store>> store = OpenHomeStore(global);
  if (!store.ok()) return Fail(store.status().message());
  StatusOr<std::string> token = (*store)->CreateToken(f.user, *scope, expires_at);
  if (!token.ok()) return Fail(token.status().message());
  std::cout << *token << "\n";
  return 0;
}

std::string TimeCell(const Json& t) { return t.is_number() ? FormatTime(t.get<double>()) : "-"; }

// The fields of a token (TokenJson) that `yard token` reads have their
// types: strings, and times as numbers or null.
Status CheckTokenFields(const Reply& t) {
  for (const char* key : {"id", "user", "scope", "state"})
    YARD_RETURN_IF_ERROR(t.GetOr<std::string>(key, "").status());
  for (const char* key : {"created_at", "expires_at", "last_used"})
    YARD_RETURN_IF_ERROR(t.GetOr<double>(key, 0).status());
  return Status::Ok();
}

// Tokens as TokenJson renders them: from the home's store, or the caller's
// own from the server.
StatusOr<Json> ListedTokens(const TokenFlags& f, const GlobalFlags& global) {
  if (ServerIsSet(global)) {
    StatusOr<std::unique_ptr<HttpClient>> client = Connect(global.Connection());
    if (!client.ok()) return client.status();
    YARD_ASSIGN_OR_RETURN(Reply got, GetReply(**client, "/v1/tokens"));
    YARD_ASSIGN_OR_RETURN(std::vector<Reply> tokens, got.Array("tokens"));
    Json out = Json::array();
    for (const Reply& t : tokens) {
      YARD_RETURN_IF_ERROR(CheckTokenFields(t));
      out.push_back(t.json());
    }
    return out;
  }
  YARD_ASSIGN_OR_RETURN(std::unique_ptr<Store> store, OpenHomeStore(global));
  YARD_ASSIGN_OR_RETURN(std::vector<TokenRecord> tokens, store->ListTokens(f.user));
  Json out = Json::array();
  for (const auto& t : tokens) out.push_back(TokenJson(t, RealClock().Now()));
  return out;
}

int ListTokensCommand(const TokenFlags& f, const GlobalFlags& global) {
  StatusOr<Json> tokens = ListedTokens(f, global);
  if (!tokens.ok()) return ExitFor("token", tokens.status());
  if (f.json) {
    std::cout << tokens->dump(2) << "\n";
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {
      {"ID", "USER", "SCOPE", "STATE", "CREATED", "EXPIRES", "LAST USED"}};
  for (const auto& t : *tokens)
    rows.push_back({t.value("id", ""), t.value("user", ""), t.value("scope", ""),
                    t.value("state", ""), TimeCell(t.value("created_at", Json())),
                    TimeCell(t.value("expires_at", Json())),
                    TimeCell(t.value("last_used", Json()))});
  PrintTable(rows);
  return 0;
}

// Revokes token `id`; returns it as TokenJson renders it.
StatusOr<Json> Revoke(const std::string& id, const GlobalFlags& global) {
  if (ServerIsSet(global)) {
    StatusOr<std::unique_ptr<HttpClient>> client = Connect(global.Connection());
    if (!client.ok()) return client.status();
    YARD_ASSIGN_OR_RETURN(Reply revoked,
                          PostReply(**client, "/v1/tokens/" + id + "/revoke", Json::object()));
    YARD_RETURN_IF_ERROR(revoked.AsObject().status());
    YARD_RETURN_IF_ERROR(CheckTokenFields(revoked));
    return revoked.json();
  }
  YARD_ASSIGN_OR_RETURN(std::unique_ptr<Store> store, OpenHomeStore(global));
  YARD_ASSIGN_OR_RETURN(TokenRecord t, store->RevokeToken(id, "", RealClock().Now()));
  return TokenJson(t, RealClock().Now());
}

int RevokeTokenCommand(const TokenFlags& f, const GlobalFlags& global) {
  // A leaked token may be given whole: it is named by the id of its hash.
  std::string id = f.id.rfind("yut_", 0) == 0 ? TokenIdOfHash(Sha256Hex(f.id)) : f.id;
  StatusOr<Json> t = Revoke(id, global);
  if (!t.ok()) return ExitFor("token", t.status());
  std::cout << "revoked token " << t->value("id", id) << " of " << t->value("user", "?")
            << " (scope " << t->value("scope", "?")
            << "): refused from its next call on, open event streams end within "
            << "seconds\n";
  return 0;
}

}  // namespace

Runner SetupToken(CLI::App* sub, GlobalFlags* global) {
  auto f = std::make_shared<TokenFlags>();
  CLI::App* create = sub->add_subcommand("create",
                                         "create a token for USER and print it (with a server "
                                         "set: one for yourself, through the API)");
  create->add_option("user", f->user, "user name");
  create
      ->add_option("--scope", f->scope,
                   "read (watch jobs, dashboards), submit (read + submit, cancel, "
                   "upload), admin (submit + own tokens) or metrics (GET /metrics only)")
      ->capture_default_str();
  create->add_option("--expires", f->expires, "lifetime: 30d, 12h or 45m (default: never expires)");
  create->add_option("--kind", f->kind,
                     "user or metrics (same as --scope metrics); agents get "
                     "per-instance credentials at launch");
  CLI::App* list =
      sub->add_subcommand("list",
                          "list tokens: ids, scopes, expiry, last use, never the tokens "
                          "(with a server set: your own)");
  list->add_option("user", f->user, "only this user's tokens");
  list->add_flag("--json", f->json, "print JSON");
  CLI::App* revoke = sub->add_subcommand("revoke",
                                         "revoke a token by its id (from `yard token list`) "
                                         "or the token itself");
  revoke->add_option("id", f->id, "token id or token")->required();
  sub->require_subcommand(1);
  return [f, global, create, list] {
    if (create->parsed()) return CreateTokenCommand(*f, *global);
    if (list->parsed()) return ListTokensCommand(*f, *global);
    return RevokeTokenCommand(*f, *global);
  };
}

}  // namespace yard::cli
