#include "server/server.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "common/file_lock.h"
#include "common/files.h"
#include "common/thread_annotations.h"
#include "common/tls.h"
#include "providers/local_provider.h"
#include "providers/ssh_provider.h"
#include "server/blob_collector.h"
#include "server/http_server.h"
#include "server/provider_set.h"
#include "server/token_auth.h"

namespace yard {

namespace {

// Reads a token file, or (when it is missing, revoked or expired) creates a
// token of `scope` for `user` and writes it.
StatusOr<std::string> EnsureTokenFile(Store* store, const std::string& path,
                                      const std::string& user, const std::string& scope) {
  StatusOr<std::string> existing = ReadFile(path);
  if (existing.ok() && !existing->empty()) {
    std::string t = *existing;
    while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
    StatusOr<TokenRecord> found = store->FindToken(t);
    if (found.ok() && CheckTokenRecord(*found, RealClock().Now()).ok()) return t;
  }
  YARD_ASSIGN_OR_RETURN(std::string token, store->CreateToken(user, scope));
  YARD_RETURN_IF_ERROR(WriteFileAtomic(path, token + "\n", 0600));
  return token;
}

// Takes the per-home lock for this process's lifetime.
Status LockHome(const std::string& home) {
  std::string path = home + "/server.lock";
  std::unique_ptr<FileLock> lock = FileLock::TryLock(path);
  if (!lock && errno == EWOULDBLOCK)
    return FailedPrecondition("another yard server already runs on " + home + " (see " + home +
                              "/server.json); stop it or use another YARD_HOME");
  if (!lock) return ErrnoStatus("cannot lock " + path);
  (void)lock.release();  // on purpose: the lock lives as long as this process does
  return Status::Ok();
}

int PreviousPort(const std::string& home) {
  StatusOr<std::string> text = ReadFile(home + "/server.json");
  if (!text.ok()) return 0;
  Json j = Json::parse(*text, nullptr, false);
  if (j.is_discarded()) return 0;
  std::string url = j.value("url", "");
  size_t colon = url.rfind(':');
  return colon == std::string::npos ? 0 : std::atoi(url.c_str() + colon + 1);
}

// Blocks SIGTERM/SIGINT in every thread and returns a thread that stops
// `api` when one arrives.
std::thread ShutdownOnSignal(HttpApi* api) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return std::thread([set, api] {
    int sig = 0;
    sigwait(&set, &sig);
    api->Stop();
  });
}

StatusOr<ControllerOptions> ControllerOptionsFrom(const ServerOptions& o) {
  ControllerOptions c;
  c.default_machine = o.default_machine;
  c.heartbeat_timeout_s = o.heartbeat_timeout_s;
  c.provisioning_timeout_s = o.provisioning_timeout_s;
  c.quota = {o.max_active_jobs, o.max_active_instances};
  c.pricing = {o.baseline_s, o.unit_percentage};
  c.max_output_bytes_per_job = o.max_job_output_mb * (int64_t{1} << 20);
  if (o.unit_percentage <= 0) return InvalidArgument("--unit-percentage must be > 0");
  for (const auto& q : o.user_quotas) {
    size_t eq = q.find('='), comma = q.find(',');
    if (eq == std::string::npos || comma == std::string::npos || comma < eq)
      return InvalidArgument("--quota wants USER=JOBS,INSTANCES, got '" + q + "'");
    c.user_quotas[q.substr(0, eq)] = {std::atoi(q.substr(eq + 1, comma - eq - 1).c_str()),
                                      std::atoi(q.substr(comma + 1).c_str())};
  }
  return c;
}

// Whether the controller may still be asked (by threads that outlive a
// call, such as an ended local instance's clean-up).
struct ControllerOpen {
  Mutex mu;
  bool open GUARDED_BY(mu) = true;
};

struct ServerParts {
  std::unique_ptr<Store> store;
  std::unique_ptr<BlobStore> blobs;
  ProviderSet providers;
  std::unique_ptr<Controller> controller;
  std::string user_token;
  std::shared_ptr<ControllerOpen> controller_open = std::make_shared<ControllerOpen>();
};

StatusOr<ServerParts> Assemble(const ServerOptions& o, const std::string& url_file,
                               const std::string& fingerprint) {
  ServerParts p;
  YARD_ASSIGN_OR_RETURN(p.store, Store::Open(o.home + "/state.db"));
  YARD_ASSIGN_OR_RETURN(BlobStore blobs, BlobStore::Open(o.home + "/blobs"));
  p.blobs = std::make_unique<BlobStore>(std::move(blobs));
  YARD_ASSIGN_OR_RETURN(p.user_token, EnsureTokenFile(p.store.get(), o.home + "/token",
                                                      LocalUserName(), kScopeAdmin));
  // Earlier versions kept one agent token for all instances here; each
  // instance has its own credential now (agent_credentials.h).
  ::unlink((o.home + "/agent_token").c_str());
  static RealClock clock;
  std::string catalog_file = o.catalog_file;
  if (catalog_file.empty() && ::access((o.home + "/catalog.json").c_str(), R_OK) == 0)
    catalog_file = o.home + "/catalog.json";
  YARD_ASSIGN_OR_RETURN(p.providers, BuildProviders(catalog_file, o.home, &clock));
  AgentLaunchInfo launch{"", url_file, "", SelfExecutable(), fingerprint};  // token: per launch
  YARD_ASSIGN_OR_RETURN(ControllerOptions copts, ControllerOptionsFrom(o));
  if (!p.providers.catalog.Find(copts.default_machine))
    return InvalidArgument("the default machine type '" + copts.default_machine +
                           "' is not in the catalog (" + p.providers.catalog.NamesForHelp() + ")");
  p.controller = std::make_unique<Controller>(p.store.get(), p.blobs.get(), p.providers.catalog,
                                              p.providers.Pointers(), launch, &clock, copts);
  // An ended local or ssh instance keeps only the spool files the server lacks.
  Controller* c = p.controller.get();
  SpoolDelivered delivered = [c, open = p.controller_open](const std::string& job,
                                                           int64_t attempt) {
    MutexLock lock(open->mu);
    return open->open ? c->DeliveredRecords(job, attempt) : int64_t{-1};
  };
  if (auto* local = dynamic_cast<LocalProvider*>(p.providers.owned["local"].get()))
    local->SetSpoolDelivered(delivered);
  if (auto it = p.providers.owned.find("ssh");
      it != p.providers.owned.end())  // not [ ]: no null entry
    if (auto* ssh = dynamic_cast<SshProvider*>(it->second.get())) ssh->SetSpoolDelivered(delivered);
  YARD_RETURN_IF_ERROR(p.controller->Recover());
  return p;
}

// The server's TLS files (none: plain HTTP), or why it must not start:
// plain HTTP beyond loopback puts every token and byte on the network in clear.
StatusOr<std::optional<TlsFiles>> ServerTls(const ServerOptions& o) {
  bool files = !o.tls_cert.empty() || !o.tls_key.empty();
  if (!o.tls_mode.empty() && o.tls_mode != "self-signed")
    return InvalidArgument(
        "--tls takes 'self-signed' (a certificate of your own: --tls-cert FILE --tls-key FILE)");
  if (!o.tls_mode.empty() && files)
    return InvalidArgument("give --tls self-signed or --tls-cert/--tls-key, not both");
  if (files && (o.tls_cert.empty() || o.tls_key.empty()))
    return InvalidArgument(
        "--tls-cert and --tls-key go together (the certificate and its private key, PEM)");
  if (files) return std::optional<TlsFiles>(TlsFiles{o.tls_cert, o.tls_key});
  if (!o.tls_mode.empty()) {
    YARD_ASSIGN_OR_RETURN(TlsFiles made, EnsureSelfSignedCertificate(
                                             o.home + "/tls", {o.host, "localhost", "127.0.0.1"}));
    return std::optional<TlsFiles>(made);
  }
  if (!IsLoopbackHost(o.host) && !o.insecure_http)
    return FailedPrecondition(
        "--host " + o.host +
        " listens beyond this machine, where plain HTTP would carry "
        "every token and all data in clear: add --tls self-signed (or --tls-cert FILE "
        "--tls-key FILE), or --insecure-http on a network you trust");
  return std::optional<TlsFiles>();
}

// The fingerprint clients pin ("" without TLS).
StatusOr<std::string> ServerFingerprint(const std::optional<TlsFiles>& tls) {
  if (!tls) return std::string();
  YARD_ASSIGN_OR_RETURN(std::string pem, ReadFile(tls->cert));
  StatusOr<std::string> fp = PemFingerprint(pem);
  if (!fp.ok()) return InvalidArgument(tls->cert + ": " + fp.status().message());
  return fp;
}

}  // namespace

namespace {
// Every open connection is a socket: the default soft limit (1024) would
// refuse the 1025th client long before threads or memory run short.
void RaiseOpenFileLimit() {
  struct rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur >= lim.rlim_max) return;
  lim.rlim_cur = lim.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &lim) != 0)
    std::fprintf(stderr, "yard server: could not raise the open-file limit: %s\n",
                 std::strerror(errno));
}
}  // namespace

int RunServer(const ServerOptions& o) {
  RaiseOpenFileLimit();
  Status s = MakeDirs(o.home);
  if (s.ok()) s = LockHome(o.home);
  if (!s.ok()) {
    std::fprintf(stderr, "yard server: %s\n", s.message().c_str());
    return 1;
  }
  StatusOr<std::optional<TlsFiles>> tls = ServerTls(o);
  StatusOr<std::string> fingerprint =
      tls.ok() ? ServerFingerprint(*tls) : StatusOr<std::string>(tls.status());
  if (!fingerprint.ok()) {
    std::fprintf(stderr, "yard server: %s\n", fingerprint.status().message().c_str());
    return 1;
  }
  std::string url_file = o.home + "/server.json";
  StatusOr<ServerParts> parts = Assemble(o, url_file, *fingerprint);
  if (!parts.ok()) {
    std::fprintf(stderr, "yard server: %s\n", parts.status().ToString().c_str());
    return 1;
  }
  ApiContext context{parts->store.get(), parts->blobs.get(), parts->controller.get()};
  context.requests_in_flight_per_user = o.max_requests_in_flight;
  HttpApi api(context, *tls ? &**tls : nullptr);
  int want = o.port ? o.port : PreviousPort(o.home);
  StatusOr<int> port = api.Bind(o.host, want);
  if (!port.ok() && !o.port) port = api.Bind(o.host, 0);
  if (!port.ok()) {
    std::fprintf(stderr, "yard server: %s\n", port.status().message().c_str());
    return 1;
  }
  std::string url = (*tls ? "https://" : "http://") + o.host + ":" + std::to_string(*port);
  Json info = {{"url", url}, {"pid", getpid()}};
  if (!fingerprint->empty()) info["fingerprint"] = *fingerprint;
  if (std::string build = SelfBuildId(); !build.empty()) info["build"] = build;  // see connection.h
  s = WriteFileAtomic(url_file, info.dump() + "\n");
  if (!s.ok()) {
    std::fprintf(stderr, "yard server: %s\n", s.message().c_str());
    return 1;
  }
  std::thread stopper = ShutdownOnSignal(&api);
  parts->controller->Start();
  std::unique_ptr<BlobCollector> collector;
  if (o.blob_grace_hours > 0) {
    auto grace = std::chrono::seconds(static_cast<int64_t>(o.blob_grace_hours * 3600));
    // Often enough that nothing lingers much past its grace.
    auto every = std::clamp(grace / 4, std::chrono::seconds(1), std::chrono::seconds(3600));
    collector =
        std::make_unique<BlobCollector>(parts->store.get(), parts->blobs.get(), grace, every);
    collector->Start();
  }
  std::fprintf(stderr, "yard server: listening on %s (home %s)\n", url.c_str(), o.home.c_str());
  if (!fingerprint->empty())
    std::fprintf(stderr,
                 "yard server: TLS certificate SHA-256 fingerprint %s\n"
                 "yard server: clients pin it: export YARD_SERVER_FINGERPRINT=%s\n",
                 fingerprint->c_str(), fingerprint->c_str());
  api.Serve();
  collector.reset();
  parts->controller->Stop();
  {
    MutexLock lock(parts->controller_open->mu);
    parts->controller_open->open = false;
  }
  stopper.detach();
  return 0;
}

}  // namespace yard
