// For tests only: reproducible pseudo-random data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>

namespace yard::test_support {

// `n` bytes drawn from mt19937_64 seeded with `seed`: the same bytes on every
// platform and run (the standard fixes mt19937_64's output), so a test that
// finds chunk boundaries in them finds the same ones each time.
inline std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    for (size_t k = 0; k < 8 && i + k < n; ++k) out[i + k] = static_cast<char>(v >> (8 * k));
  }
  return out;
}

}  // namespace yard::test_support
