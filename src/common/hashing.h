// SHA-256 through OpenSSL's EVP interface (uses SHA-NI where present).
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace yard {

// Lower-case hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);

// True if `s` looks like a lower-case hex SHA-256 (64 chars of [0-9a-f]).
bool IsSha256Hex(std::string_view s);

// `bytes` random bytes from OpenSSL's CSPRNG, as lower-case hex (for
// tokens and ids).
std::string RandomHex(size_t bytes);

// Incremental hasher. Not thread-safe.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::string_view data);
  void Update(const void* data, size_t size);
  // Returns the hex digest. REQUIRES: called once.
  std::string FinishHex();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace yard
