// Helpers shared by the fuzz targets (fuzz/*_fuzzer.cc).
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace yard::fuzz {

// A finding: prints `what` and aborts, which libFuzzer reports as a crash
// (and saves the input). For properties the sanitizers cannot see.
[[noreturn]] inline void Fail(const std::string& what) {
  std::fprintf(stderr, "fuzz property broken: %s\n", what.c_str());
  std::abort();
}

inline std::string_view AsView(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Parses JSON without exceptions; discarded when it is not JSON.
inline nlohmann::json ParseJson(std::string_view text) {
  return nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
}

// A fresh empty folder of this process (in /dev/shm when there is one, so
// that file-based targets stay fast), the same path on every call.
inline std::string ScratchDir() {
  static const std::string dir = [] {
    std::string base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    return base + "/yard-fuzz-" + std::to_string(::getpid());
  }();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir, ec);
  if (ec) Fail("cannot make scratch folder " + dir + ": " + ec.message());
  return dir;
}

}  // namespace yard::fuzz
