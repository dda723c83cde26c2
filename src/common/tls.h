// TLS certificates of `yard server` and their fingerprints.
//
// A fingerprint is the SHA-256 of a certificate's DER encoding, written as
// 32 upper-case hex pairs joined by ':' ("AB:12:...", as `openssl x509
// -noout -fingerprint -sha256` prints it). Clients pin a server by it
// (client/tls_trust.h), so a self-signed certificate needs no CA.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <openssl/types.h>

#include "common/status.h"

namespace yard {

// The fingerprint of `cert`. REQUIRES: cert != nullptr.
std::string CertificateFingerprint(X509* cert);

// The fingerprint of the first certificate in a PEM text (a certificate
// file, perhaps followed by its chain).
StatusOr<std::string> PemFingerprint(std::string_view pem);

// `text` as a fingerprint in the canonical form above. Accepts 64 hex digits
// in either case, with or without ':' or spaces between pairs, after an
// optional "sha256:", "SHA256 Fingerprint=" or "sha256//" prefix (what
// openssl and other tools print). InvalidArgument, saying the expected shape,
// otherwise.
StatusOr<std::string> NormalizeFingerprint(std::string_view text);

// A certificate file and its private key file (PEM).
struct TlsFiles {
  std::string cert;
  std::string key;
};

// Makes a self-signed certificate (ECDSA P-256, valid 10 years) for `names`
// (host names or IP addresses, all put in subjectAltName; the first is the
// subject's CN) and writes it and its key (mode 0600) to `files`.
Status WriteSelfSignedCertificate(const TlsFiles& files, const std::vector<std::string>& names);

// The self-signed certificate kept in `dir` (cert.pem, key.pem): made on
// first call, then reused as is, so that its fingerprint, which clients
// pinned, survives restarts.
StatusOr<TlsFiles> EnsureSelfSignedCertificate(const std::string& dir,
                                               const std::vector<std::string>& names);

// True for addresses only this machine can reach: 127.0.0.0/8, ::1,
// "localhost". Anything else (0.0.0.0, ::, a LAN address, a name) is not.
bool IsLoopbackHost(const std::string& host);

}  // namespace yard
