// Running a controller: `yard server`, explicit or embedded.
//
// State lives under `home` ($YARD_HOME): state.db (the store), blobs/,
// instances/ (local agents), token (the local user's token, 0600),
// server.json ({"url", "pid", "fingerprint" with TLS}: where clients and
// local agents find the server), tls/ (the self-signed certificate). A lock on home/server.lock
// makes sure one server runs per home.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace yard {

struct ServerOptions {
  std::string home;
  std::string host = "127.0.0.1";
  int port = 0;  // 0: reuse the last port if free, else any
  std::string default_machine = "local";
  double heartbeat_timeout_s = 10;
  double provisioning_timeout_s = 300;
  std::string catalog_file;  // "" = home/catalog.json if present
  int max_active_jobs = 5;
  int max_active_instances = 5;
  int max_requests_in_flight = 64;       // per user; event streams apart (docs/api.md, "Tokens")
  std::vector<std::string> user_quotas;  // "USER=JOBS,INSTANCES"
  double baseline_s = 600;
  double unit_percentage = 0.01;
  int64_t max_job_output_mb = 1024;  // per job; <= 0: no cap
  // Chunks nothing names, untouched this long, are removed (blob_collector.h);
  // <= 0: never.
  double blob_grace_hours = 24;
  // TLS: a certificate and key of the operator's (PEM), or tls_mode
  // "self-signed": one made on first start under home/tls and reused. A
  // server with neither listens beyond loopback only with insecure_http.
  std::string tls_cert, tls_key, tls_mode;
  bool insecure_http = false;
};

// Serves until SIGTERM/SIGINT. Returns the process exit code.
int RunServer(const ServerOptions& options);

}  // namespace yard
