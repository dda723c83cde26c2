// How clients (CLI, SDK, agents) trust a `yard server` that speaks TLS.
//
// Either the server's certificate fingerprint is pinned (common/tls.h; from
// YARD_SERVER_FINGERPRINT, from the agent's launch, or remembered after the
// user accepted it once on a terminal), and then it alone decides; or
// nothing is pinned and the certificate must chain to one of this machine's
// CAs and name the host, as for any https site.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "common/status.h"

namespace httplib {
class Client;
}

namespace yard {

struct TlsTrust {
  std::string fingerprint;  // canonical (NormalizeFingerprint); "" = the system's CAs
  std::string source;       // where it came from, for messages ("YARD_SERVER_FINGERPRINT")
};

// An httplib client for `url` (http:// or https://) that checks an https
// server's certificate as `trust` says; nullptr for a URL httplib cannot use.
std::unique_ptr<httplib::Client> NewHttplibClient(const std::string& url, const TlsTrust& trust);

// The fingerprint of the certificate the server presented in `cli`'s latest
// TLS handshake; "" if there was none.
std::string PresentedFingerprint(const httplib::Client& cli);

// A message for a call on `cli` to `url` that failed in transport with
// httplib error `error` (httplib::Error as int) when the cause is TLS: a
// certificate not trusted (saying its fingerprint and how to pin it), a pin
// that does not match, or plain HTTP sent to a server that speaks TLS
// (probed). "" when TLS is not the cause.
std::string ExplainTlsFailure(const httplib::Client& cli, const std::string& url,
                              const TlsTrust& trust, int error);

// True if a connection idle since `since` may still be reused: the server
// closes one idle for 2 s, and a TLS connection it closed looks alive to
// cpp-httplib (its close_notify is data waiting to be read), so the next
// request on it would fail in the write. Pools drop connections older than
// `max_age` (under 2 s) instead.
bool KeepIdleFor(std::chrono::steady_clock::time_point since, std::chrono::milliseconds max_age);

// True if url's host:port completes a TLS handshake (any certificate).
bool SpeaksTls(const std::string& url);

// The client's file of fingerprints accepted on first use, one per server:
// $XDG_CONFIG_HOME/trainyard/known_servers.json (default ~/.config/...).
std::string KnownServersPath();
// The fingerprint remembered for `url` ("" if none).
std::string RememberedFingerprint(const std::string& url);
Status RememberFingerprint(const std::string& url, const std::string& fingerprint);

// The trust for a server at `url`: YARD_SERVER_FINGERPRINT if set (an
// error if malformed), else the fingerprint remembered for it, else the
// system's CAs.
StatusOr<TlsTrust> TrustFor(const std::string& url);

// Trust on first use, for an https `url` with nothing pinned: if this
// machine's CAs do not vouch for its certificate and stdin and stderr are a
// terminal, shows the fingerprint and asks whether to trust and remember it.
// Returns `trust` unchanged when nothing needed asking (CAs vouch, the server
// is down, not a terminal: the call itself will then fail and say why), the
// pinned trust when accepted, or an error when refused.
StatusOr<TlsTrust> TrustOnFirstUse(const std::string& url, const TlsTrust& trust);

}  // namespace yard
