#include "common/tls.h"

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cctype>
#include <functional>
#include <memory>

#include "common/files.h"

namespace yard {
namespace {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION, X509_EXTENSION_free>>;

std::string HexPairs(const unsigned char* bytes, size_t n) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    if (i) out.push_back(':');
    out.push_back(kHex[bytes[i] >> 4]);
    out.push_back(kHex[bytes[i] & 15]);
  }
  return out;
}

bool IsIpAddress(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// "DNS:a,IP:1.2.3.4": the wildcard listen addresses name no host and are left out.
std::string SubjectAltNames(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) {
    if (n.empty() || n == "0.0.0.0" || n == "::") continue;
    if (!out.empty()) out += ",";
    out += (IsIpAddress(n) ? "IP:" : "DNS:") + n;
  }
  return out.empty() ? "DNS:localhost" : out;
}

Status AddExtension(X509* cert, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1)
    return Internal("cannot add the certificate extension '" + value + "'");
  return Status::Ok();
}

Status FillCertificate(X509* cert, EVP_PKEY* key, const std::vector<std::string>& names) {
  constexpr long kTenYearsS = 10L * 366 * 24 * 3600;
  std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>> serial(BN_new());
  if (!serial || BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert)))
    return Internal("cannot make a certificate serial number");
  X509_set_version(cert, 2);  // v3, for subjectAltName
  X509_gmtime_adj(X509_getm_notBefore(cert),
                  -3600);  // a client clock a little behind still accepts it
  X509_gmtime_adj(X509_getm_notAfter(cert), kTenYearsS);
  X509_set_pubkey(cert, key);
  std::string cn =
      names.empty() || names[0].empty() || names[0] == "0.0.0.0" ? "localhost" : names[0];
  X509_NAME* subject = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("Trainyard"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert, subject);
  YARD_RETURN_IF_ERROR(AddExtension(cert, NID_subject_alt_name, SubjectAltNames(names)));
  YARD_RETURN_IF_ERROR(AddExtension(cert, NID_basic_constraints, "critical,CA:FALSE"));
  if (X509_sign(cert, key, EVP_sha256()) <= 0) return Internal("cannot sign the certificate");
  return Status::Ok();
}

StatusOr<std::string> Pem(const std::function<int(BIO*)>& write) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || write(bio.get()) != 1) return Internal("cannot encode PEM");
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, n);
}

}  // namespace

std::string CertificateFingerprint(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (X509_digest(cert, EVP_sha256(), md, &n) != 1) return "";
  return HexPairs(md, n);
}

StatusOr<std::string> PemFingerprint(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!cert)
    return InvalidArgument("not a PEM certificate (expected '-----BEGIN CERTIFICATE-----')");
  return CertificateFingerprint(cert.get());
}

StatusOr<std::string> NormalizeFingerprint(std::string_view text) {
  std::string lower;
  for (char c : text)
    lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  for (std::string_view prefix : {"sha256 fingerprint=", "sha256:", "sha256//", "sha-256:"}) {
    if (lower.rfind(prefix, 0) == 0) {
      lower.erase(0, prefix.size());
      break;
    }
  }
  std::string hex;
  for (char c : lower) {
    if (c == ':' || c == ' ') continue;
    if (!std::isxdigit(static_cast<unsigned char>(c))) {
      hex.clear();
      break;
    }
    hex.push_back(c);
  }
  if (hex.size() != 64)
    return InvalidArgument("'" + std::string(text) +
                           "' is not a SHA-256 certificate fingerprint: expected 64 hex "
                           "digits, as `yard server` prints it (AB:12:...:EF)");
  unsigned char bytes[32];
  for (int i = 0; i < 32; ++i)
    bytes[i] = static_cast<unsigned char>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  return HexPairs(bytes, 32);
}

Status WriteSelfSignedCertificate(const TlsFiles& files, const std::vector<std::string>& names) {
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return Internal("cannot generate an EC P-256 key");
  X509Ptr cert(X509_new());
  if (!cert) return Internal("cannot allocate a certificate");
  YARD_RETURN_IF_ERROR(FillCertificate(cert.get(), key.get(), names));
  YARD_ASSIGN_OR_RETURN(std::string key_pem, Pem([&](BIO* b) {
                          return PEM_write_bio_PrivateKey(b, key.get(), nullptr, nullptr, 0,
                                                          nullptr, nullptr);
                        }));
  YARD_ASSIGN_OR_RETURN(std::string cert_pem,
                        Pem([&](BIO* b) { return PEM_write_bio_X509(b, cert.get()); }));
  // The key first: a certificate file without its key would be reused as is.
  YARD_RETURN_IF_ERROR(WriteFileAtomic(files.key, key_pem, 0600));
  return WriteFileAtomic(files.cert, cert_pem, 0644);
}

StatusOr<TlsFiles> EnsureSelfSignedCertificate(const std::string& dir,
                                               const std::vector<std::string>& names) {
  TlsFiles files{dir + "/cert.pem", dir + "/key.pem"};
  if (::access(files.cert.c_str(), R_OK) == 0 && ::access(files.key.c_str(), R_OK) == 0)
    return files;
  YARD_RETURN_IF_ERROR(MakeDirs(dir));
  YARD_RETURN_IF_ERROR(WriteSelfSignedCertificate(files, names));
  return files;
}

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  in_addr a;
  return inet_pton(AF_INET, host.c_str(), &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

}  // namespace yard
