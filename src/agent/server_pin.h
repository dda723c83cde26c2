// The server's TLS pin that an agent keeps beside its credential, so that an
// agent started again in place (the same --dir; docs/operations.md, "What
// survives what") trusts the server it was launched for without being given
// YARD_SERVER_FINGERPRINT again: a supervisor on an SSH host or a cloud
// machine restarting it need not know the fingerprint.
#pragma once

#include <string>

#include "client/tls_trust.h"
#include "common/status.h"

namespace yard {

// The file in an agent's folder that holds the kept pin (a canonical
// fingerprint and a newline; 0600, replaced atomically).
inline constexpr char kServerPinFile[] = "server-fingerprint";

// How the agent whose folder is `dir` trusts an https:// server, given
// `given` (YARD_SERVER_FINGERPRINT; "" when not set):
//   - given: that fingerprint, also kept in dir/server-fingerprint for later
//     starts (replacing what was kept);
//   - not given, a pin kept: the kept one (its source names the file); a
//     server presenting another certificate is refused
//     (client/tls_trust.h), and WithKeptPinAdvice says what to do;
//   - neither: the system's CAs (TlsTrust with no fingerprint).
// InvalidArgument for a malformed `given` or kept file (saying which); the
// error of writing the file (`dir` must exist).
StatusOr<TlsTrust> AgentServerTrust(const std::string& dir, const std::string& given);

// The message of `failure`, the error that stopped an agent trusting the
// server by `trust` (AgentServerTrust of `dir`); when that trust is the pin
// kept in `dir` and the server presented another certificate, followed by
// what to do: delete the file, or start the agent with
// YARD_SERVER_FINGERPRINT set.
std::string WithKeptPinAdvice(const Status& failure, const TlsTrust& trust, const std::string& dir);

}  // namespace yard
