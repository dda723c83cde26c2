#include "client/connection.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <httplib.h>

#include "common/file_lock.h"
#include "common/files.h"
#include "common/process.h"

namespace yard {

StatusOr<std::string> ReadServerUrl(const std::string& home) {
  YARD_ASSIGN_OR_RETURN(std::string text, ReadFile(home + "/server.json"));
  Json j = Json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("url") || !j["url"].is_string())
    return Unavailable(home + "/server.json is damaged: remove it and retry");
  return j["url"].get<std::string>();
}

TlsTrust ReadServerTrust(const std::string& home) {
  StatusOr<std::string> text = ReadFile(home + "/server.json");
  if (!text.ok()) return {};
  Json j = Json::parse(*text, nullptr, false);
  if (!j.is_object() || !j.contains("fingerprint") || !j["fingerprint"].is_string()) return {};
  return {j["fingerprint"].get<std::string>(), home + "/server.json"};
}

bool ServerHealthy(const std::string& url, const TlsTrust& trust) {
  std::unique_ptr<httplib::Client> cli = NewHttplibClient(url, trust);
  if (!cli) return false;
  cli->set_connection_timeout(1, 0);
  cli->set_read_timeout(2, 0);
  auto r = cli->Get("/v1/health");
  return r && r->status == 200;
}

namespace {

StatusOr<std::string> HealthyUrl(const std::string& home) {
  StatusOr<std::string> url = ReadServerUrl(home);
  if (url.ok() && ServerHealthy(*url, ReadServerTrust(home))) return url;
  return Unavailable("no embedded server answers on " + home);
}

// True if a server process holds home/server.lock (it does for its whole
// life, even while too busy to answer; the kernel drops it when it dies).
bool ServerProcessRuns(const std::string& home) {
  return FileLock::HeldElsewhere(home + "/server.lock");
}

// Waits up to 20 s for the server to answer; stops early if `pid` (the one
// we started, 0 if none) exits.
StatusOr<std::string> AwaitServer(const std::string& home, int pid) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto url = HealthyUrl(home); url.ok()) return url;
    if (pid && !ProcessAlive(pid, "")) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::string log = ReadFile(home + "/server.log").ok() ? *ReadFile(home + "/server.log") : "";
  if (log.size() > 2000) log = log.substr(log.size() - 2000);
  return Unavailable("the embedded server did not start (log " + home + "/server.log):\n" + log);
}

// Starts a server on `home` and waits for it to answer. The caller holds
// home/start.lock and saw no server process.
StatusOr<std::string> StartServer(const std::string& home, const std::string& yard_binary) {
  std::string binary = yard_binary.empty() ? SelfExecutable() : yard_binary;
  YARD_ASSIGN_OR_RETURN(int pid, SpawnDetached({binary, "server", "--home", home},
                                               CurrentEnvironment(), home + "/server.log"));
  return AwaitServer(home, pid);  // it writes server.json once listening
}

}  // namespace

StatusOr<std::string> EnsureEmbeddedServer(const std::string& home,
                                           const std::string& yard_binary) {
  if (auto url = HealthyUrl(home); url.ok()) return url;
  YARD_RETURN_IF_ERROR(MakeDirs(home));
  FileLock lock(home + "/start.lock");
  if (!lock.ok()) return ErrnoStatus("cannot lock " + home + "/start.lock");
  if (auto url = HealthyUrl(home); url.ok()) return url;  // another process won the race
  // A server that runs but does not answer yet (starting, or busy) is waited
  // for, not doubled.
  if (ServerProcessRuns(home)) return AwaitServer(home, 0);
  return StartServer(home, yard_binary);
}

Status ReviveEmbeddedServer(const std::string& home, const std::string& yard_binary) {
  // Probing server.lock only under start.lock: a probe never collides with
  // a starting server's own lock.
  FileLock lock(home + "/start.lock");
  if (!lock.ok()) return ErrnoStatus("cannot lock " + home + "/start.lock");
  if (ServerProcessRuns(home)) return Status::Ok();  // alive, perhaps busy: not ours to judge
  return StartServer(home, yard_binary).status();
}

std::string EmbeddedServerOfAnotherBuild(const std::string& home, std::string ours) {
  StatusOr<std::string> text = ReadFile(home + "/server.json");
  if (!text.ok()) return "";
  Json j = Json::parse(*text, nullptr, false);
  if (!j.is_object() || !j.contains("build") || !j["build"].is_string()) return "";
  if (ours.empty()) ours = SelfBuildId();
  if (ours.empty() || j["build"].get<std::string>() == ours) return "";
  std::string pid = j.contains("pid") && j["pid"].is_number_integer()
                        ? std::to_string(j["pid"].get<int64_t>())
                        : "?";
  return "the embedded server (pid " + pid + ", " + home +
         ") runs another build of yard than this one "
         "and keeps serving its code until it stops: stop it with `kill " +
         pid +
         "` (jobs, agents and "
         "followers go on; the next command starts this build's server)";
}

StatusOr<std::unique_ptr<HttpClient>> Connect(const ConnectionOptions& o) {
  std::string server = o.server.empty() ? EnvOr("YARD_SERVER", "") : o.server;
  std::string token = o.token.empty() ? EnvOr("YARD_TOKEN", "") : o.token;
  if (!server.empty()) {
    if (token.empty())
      return Unauthenticated("a server is set (" + server +
                             ") but no token: set YARD_TOKEN "
                             "(create one on the server with `yard token create USER`)");
    YARD_ASSIGN_OR_RETURN(TlsTrust trust, TrustFor(server));
    YARD_ASSIGN_OR_RETURN(trust, TrustOnFirstUse(server, trust));
    auto client = std::make_unique<HttpClient>(server, token);
    client->set_tls_trust(std::move(trust));
    return client;
  }
  std::string home = o.home.empty() ? DefaultYardHome() : o.home;
  YARD_RETURN_IF_ERROR(EnsureEmbeddedServer(home, o.yard_binary).status());
  if (token.empty()) {
    YARD_ASSIGN_OR_RETURN(token, ReadFile(home + "/token"));
    while (!token.empty() && (token.back() == '\n' || token.back() == ' ')) token.pop_back();
  }
  // The embedded server may restart on another port: re-read its file on
  // every connection.
  UrlResolver resolve = [home]() { return ReadServerUrl(home); };
  auto client = std::make_unique<HttpClient>(resolve, token);
  client->set_tls_trust(ReadServerTrust(home));
  // Our own server's blobs, on this machine: the artifact mirror reads
  // chunks there (checking each) rather than over HTTP.
  // YARD_MIRROR_LOCAL_BLOBS=0 turns that off (for comparisons; bench/README.md).
  if (EnvOr("YARD_MIRROR_LOCAL_BLOBS", "") != "0") client->set_local_blobs(home + "/blobs");
  if (o.restart_embedded) {
    std::string binary = o.yard_binary;
    client->set_reviver([home, binary]() { return ReviveEmbeddedServer(home, binary); });
  }
  return client;
}

}  // namespace yard
