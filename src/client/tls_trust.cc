#include "client/tls_trust.h"

#include <httplib.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "common/files.h"
#include "common/thread_annotations.h"
#include "common/tls.h"

namespace yard {
namespace {

using Json = nlohmann::json;

// What one SSL_CTX checks, and the certificate it saw last. Owned by the
// SSL_CTX (freed with it through the ex_data slot below).
struct Verifier {
  std::string pin;          // "" = the system's CAs
  bool accept_any = false;  // a probe: any certificate will do
  Mutex mu;
  std::string presented GUARDED_BY(mu);
};

void FreeVerifier(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<Verifier*>(ptr);
}

int VerifierSlot() {
  static const int slot = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, FreeVerifier);
  return slot;
}

// Replaces OpenSSL's chain check (SSL_CTX_set_cert_verify_callback): records
// the server's certificate, then judges by the pin, or by the CAs as
// OpenSSL would.
int VerifyServer(X509_STORE_CTX* store, void* arg) {
  auto* v = static_cast<Verifier*>(arg);
  X509* leaf = X509_STORE_CTX_get0_cert(store);
  std::string fingerprint = leaf ? CertificateFingerprint(leaf) : "";
  {
    MutexLock lock(v->mu);
    v->presented = fingerprint;
  }
  if (v->accept_any) return 1;
  if (v->pin.empty()) return X509_verify_cert(store);
  if (!fingerprint.empty() && fingerprint == v->pin) {
    X509_STORE_CTX_set_error(store, X509_V_OK);
    return 1;
  }
  X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED);
  return 0;
}

Verifier* VerifierOf(const httplib::Client& cli) {
  SSL_CTX* ctx = cli.ssl_context();
  return ctx ? static_cast<Verifier*>(SSL_CTX_get_ex_data(ctx, VerifierSlot())) : nullptr;
}

std::unique_ptr<httplib::Client> NewClient(const std::string& url, const std::string& pin,
                                           bool accept_any) {
  auto cli = std::make_unique<httplib::Client>(url);
  if (!cli->is_valid()) return nullptr;
  SSL_CTX* ctx = cli->ssl_context();
  if (!ctx) return cli;  // plain http://
  auto* v = new Verifier;
  v->pin = pin;
  v->accept_any = accept_any;
  SSL_CTX_set_ex_data(ctx, VerifierSlot(), v);
  SSL_CTX_set_cert_verify_callback(ctx, VerifyServer, v);
  if (!pin.empty() || accept_any) {
    // The pin alone decides: no CA, no host name (agents dial 127.0.0.1
    // through tunnels; servers are known by IP). A mismatch fails the handshake.
    cli->enable_server_certificate_verification(false);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  }
  return cli;
}

// "https://h:p" for "http://h:p/...".
std::string AsHttps(const std::string& url) {
  std::string rest = url.rfind("http://", 0) == 0 ? url.substr(7) : url;
  size_t slash = rest.find('/');
  if (slash != std::string::npos) rest.resize(slash);
  return "https://" + rest;
}

std::string ServerKey(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

StatusOr<Json> ReadKnownServers() {
  StatusOr<std::string> text = ReadFile(KnownServersPath());
  if (!text.ok()) return Json{{"version", 1}, {"servers", Json::object()}};
  Json j = Json::parse(*text, nullptr, false);
  if (!j.is_object() || !j.contains("servers") || !j["servers"].is_object())
    return FailedPrecondition(KnownServersPath() +
                              " is damaged: fix or remove it (it only remembers fingerprints "
                              "you accepted; you will be asked again)");
  return j;
}

bool Interactive() { return ::isatty(0) && ::isatty(2); }

std::string UntrustedMessage(const std::string& url, const std::string& presented) {
  return "the server at " + url +
         " presents a certificate that this machine's CAs do not vouch for "
         "(a self-signed one, as `yard server --tls self-signed` makes); its SHA-256 fingerprint "
         "is " +
         presented +
         ". Check that this is the fingerprint the server printed when it started (also "
         "\"fingerprint\" in server.json under its YARD_HOME), then pin it: export "
         "YARD_SERVER_FINGERPRINT=" +
         presented + " (or run a yard command on a terminal to be asked once)";
}

}  // namespace

std::unique_ptr<httplib::Client> NewHttplibClient(const std::string& url, const TlsTrust& trust) {
  return NewClient(url, trust.fingerprint, false);
}

std::string PresentedFingerprint(const httplib::Client& cli) {
  Verifier* v = VerifierOf(cli);
  if (!v) return "";
  MutexLock lock(v->mu);
  return v->presented;
}

bool KeepIdleFor(std::chrono::steady_clock::time_point since, std::chrono::milliseconds max_age) {
  return std::chrono::steady_clock::now() - since < max_age;
}

bool SpeaksTls(const std::string& url) {
  std::unique_ptr<httplib::Client> cli = NewClient(AsHttps(url), "", true);
  if (!cli) return false;
  cli->set_connection_timeout(2, 0);
  cli->set_read_timeout(2, 0);
  cli->Get("/v1/health");
  return !PresentedFingerprint(*cli).empty();
}

std::string ExplainTlsFailure(const httplib::Client& cli, const std::string& url,
                              const TlsTrust& trust, int error) {
  auto e = static_cast<httplib::Error>(error);
  std::string presented = PresentedFingerprint(cli);
  if (e == httplib::Error::SSLServerVerification) {
    if (cli.get_openssl_verify_result() == X509_V_OK)
      return "the server at " + url +
             " has a certificate from a trusted CA, but for another host name: "
             "use the name it was issued for in the URL, or pin its fingerprint " +
             presented + " with YARD_SERVER_FINGERPRINT";
    if (!presented.empty()) return UntrustedMessage(url, presented);
  }
  if (e == httplib::Error::SSLConnection && !trust.fingerprint.empty() && !presented.empty() &&
      presented != trust.fingerprint)
    return "the server at " + url + " presents a certificate with SHA-256 fingerprint " +
           presented + ", not the pinned " + trust.fingerprint + " (from " + trust.source +
           "): refused. If its "
           "certificate was replaced on purpose, get the new fingerprint from its operator and "
           "update " +
           trust.source + "; otherwise someone may be intercepting the connection";
  bool plain = url.rfind("http://", 0) == 0;
  if (plain && e != httplib::Error::Connection && e != httplib::Error::Canceled && SpeaksTls(url))
    return "the server at " + url + " speaks TLS (HTTPS), not plain HTTP: use " + AsHttps(url) +
           " (in YARD_SERVER or --server)";
  return "";
}

std::string KnownServersPath() {
  std::string base = EnvOr("XDG_CONFIG_HOME", "");
  if (base.empty()) base = EnvOr("HOME", "/tmp") + "/.config";
  return base + "/trainyard/known_servers.json";
}

std::string RememberedFingerprint(const std::string& url) {
  StatusOr<Json> known = ReadKnownServers();
  if (!known.ok()) return "";
  const Json& servers = (*known)["servers"];
  auto it = servers.find(ServerKey(url));
  return it != servers.end() && it->is_string() ? it->get<std::string>() : "";
}

Status RememberFingerprint(const std::string& url, const std::string& fingerprint) {
  YARD_ASSIGN_OR_RETURN(Json known, ReadKnownServers());
  known["servers"][ServerKey(url)] = fingerprint;
  std::string path = KnownServersPath();
  YARD_RETURN_IF_ERROR(MakeDirs(path.substr(0, path.rfind('/'))));
  return WriteFileAtomic(path, known.dump(2) + "\n", 0600);
}

StatusOr<TlsTrust> TrustFor(const std::string& url) {
  std::string env = EnvOr("YARD_SERVER_FINGERPRINT", "");
  if (!env.empty()) {
    StatusOr<std::string> fp = NormalizeFingerprint(env);
    if (!fp.ok()) return InvalidArgument("YARD_SERVER_FINGERPRINT: " + fp.status().message());
    return TlsTrust{*fp, "YARD_SERVER_FINGERPRINT"};
  }
  std::string remembered = RememberedFingerprint(url);
  if (!remembered.empty()) return TlsTrust{remembered, KnownServersPath()};
  return TlsTrust{};
}

StatusOr<TlsTrust> TrustOnFirstUse(const std::string& url, const TlsTrust& trust) {
  if (!trust.fingerprint.empty() || url.rfind("https://", 0) != 0 || !Interactive()) return trust;
  std::unique_ptr<httplib::Client> cli = NewHttplibClient(url, trust);
  if (!cli) return trust;
  cli->set_connection_timeout(5, 0);
  cli->set_read_timeout(10, 0);
  httplib::Result r = cli->Get("/v1/health");
  std::string presented = PresentedFingerprint(*cli);
  if (r || r.error() != httplib::Error::SSLServerVerification || presented.empty() ||
      cli->get_openssl_verify_result() == X509_V_OK)
    return trust;
  std::fprintf(
      stderr,
      "The server at %s presents a certificate that this machine's CAs do not vouch for.\n"
      "Its SHA-256 fingerprint is:\n  %s\n"
      "Compare it with the fingerprint `yard server` printed when it started (ask its operator).\n"
      "Trust it and remember it for this server in %s? [y/N] ",
      url.c_str(), presented.c_str(), KnownServersPath().c_str());
  std::string answer;
  std::getline(std::cin, answer);
  if (answer != "y" && answer != "Y" && answer != "yes")
    return PermissionDenied("not trusted: " + UntrustedMessage(url, presented));
  YARD_RETURN_IF_ERROR(RememberFingerprint(url, presented));
  std::fprintf(stderr,
               "yard: remembered; a different certificate on this server will be refused\n");
  return TlsTrust{presented, KnownServersPath()};
}

}  // namespace yard
