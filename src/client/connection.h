// Finding the server to talk to: an explicit one (--server / YARD_SERVER
// with YARD_TOKEN), or the embedded local server under $YARD_HOME, started
// in the background on first use.
#pragma once

#include <memory>
#include <string>

#include "client/http_client.h"
#include "common/status.h"

namespace yard {

struct ConnectionOptions {
  std::string server;       // explicit URL; "" = YARD_SERVER, else embedded
  std::string token;        // "" = YARD_TOKEN, else the embedded home's token
  std::string home;         // "" = DefaultYardHome()
  std::string yard_binary;  // to start the embedded server; "" = this executable
  // Followers start the embedded server again when they find it gone (see
  // ReviveEmbeddedServer). Off only where `yard_binary` cannot be known.
  bool restart_embedded = true;
};

// Returns a client for the configured server, starting the embedded one if
// needed.
// A warning when home's running embedded server was started from another
// build of yard than `ours` (server.json's "build"; ours "": this program's
// SelfBuildId; the Python SDK passes BuildIdOf the `yard` it starts servers
// with), as after an upgrade: it would go on serving the old code. "" otherwise.
std::string EmbeddedServerOfAnotherBuild(const std::string& home, std::string ours = "");

StatusOr<std::unique_ptr<HttpClient>> Connect(const ConnectionOptions& options);

// Makes sure an embedded server runs on `home` and returns its URL. Several
// processes calling this at once start exactly one server: they serialize
// on home/start.lock, and a running server is detected by its health check.
StatusOr<std::string> EnsureEmbeddedServer(const std::string& home, const std::string& yard_binary);

// Starts the embedded server on `home` again if no server process runs
// there (it holds home/server.lock while alive, even when too busy to
// answer); OK with nothing done if one runs. Exactly one server starts
// however many clients call this at once (EnsureEmbeddedServer's lock).
Status ReviveEmbeddedServer(const std::string& home, const std::string& yard_binary);

// Reads home/server.json's URL (no health check).
StatusOr<std::string> ReadServerUrl(const std::string& home);
// The trust for the server of `home`: the fingerprint it wrote in
// server.json when it speaks TLS (a file of our own, so no question asked).
TlsTrust ReadServerTrust(const std::string& home);

// True if GET url/v1/health answers.
bool ServerHealthy(const std::string& url, const TlsTrust& trust = {});

}  // namespace yard
