#include "common/hash_cache.h"

#include <cstdlib>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/files.h"
#include "common/hashing.h"

namespace yard {
namespace {

using Json = nlohmann::json;
using SystemClock = std::chrono::system_clock;

int64_t Nanos(const struct timespec& t) { return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec; }

// What must not have changed for the remembered chunks to still be the file's.
Json Identity(const struct stat& st) {
  return {{"dev", static_cast<uint64_t>(st.st_dev)},
          {"ino", static_cast<uint64_t>(st.st_ino)},
          {"size", static_cast<uint64_t>(st.st_size)},
          {"mtime_ns", Nanos(st.st_mtim)},
          {"ctime_ns", Nanos(st.st_ctim)}};
}

std::string Absolute(const std::string& path) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(path, ec);
  return ec ? path : p.lexically_normal().string();
}

bool SettledBefore(const struct stat& st, SystemClock::time_point read_start) {
  int64_t start =
      std::chrono::duration_cast<std::chrono::nanoseconds>(read_start.time_since_epoch()).count();
  int64_t limit = start - std::chrono::nanoseconds(HashCache::kSettled).count();
  return Nanos(st.st_mtim) < limit && Nanos(st.st_ctim) < limit;
}

}  // namespace

HashCache::HashCache(std::string dir, ChunkerParams params)
    : dir_(std::move(dir)), params_(params) {}

std::string HashCache::EntryPath(const std::string& path) const {
  std::string key = Absolute(path) + "\n" + std::to_string(params_.min_size) + "/" +
                    std::to_string(params_.avg_size) + "/" + std::to_string(params_.max_size);
  return dir_ + "/" + Sha256Hex(key);
}

std::optional<std::vector<ChunkRef>> HashCache::Lookup(const std::string& path,
                                                       const struct stat& st) const {
  if (dir_.empty() || !S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) < kMinFileBytes)
    return std::nullopt;
  StatusOr<std::string> text = ReadFile(EntryPath(path));
  if (!text.ok()) return std::nullopt;
  Json j = Json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || j.value("v", 0) != 1 || j.value("identity", Json()) != Identity(st) ||
      !j.contains("chunks") || !j["chunks"].is_array())
    return std::nullopt;
  std::vector<ChunkRef> chunks;
  uint64_t total = 0;
  for (const Json& c : j["chunks"]) {
    if (!c.is_array() || c.size() != 2 || !c[0].is_string() || !c[1].is_number_unsigned())
      return std::nullopt;
    ChunkRef ref{c[0].get<std::string>(), c[1].get<uint64_t>()};
    if (!IsSha256Hex(ref.hash)) return std::nullopt;
    total += ref.size;
    chunks.push_back(std::move(ref));
  }
  if (total != static_cast<uint64_t>(st.st_size)) return std::nullopt;
  return chunks;
}

void HashCache::Remember(const std::string& path, const struct stat& before,
                         SystemClock::time_point read_start,
                         const std::vector<ChunkRef>& chunks) const {
  if (dir_.empty() || static_cast<uint64_t>(before.st_size) < kMinFileBytes) return;
  struct stat after;
  if (::lstat(path.c_str(), &after) != 0 || Identity(after) != Identity(before) ||
      !SettledBefore(after, read_start))
    return;
  Json list = Json::array();
  for (const ChunkRef& c : chunks) list.push_back({c.hash, c.size});
  Json entry = {
      {"v", 1}, {"path", Absolute(path)}, {"identity", Identity(after)}, {"chunks", list}};
  if (!MakeDirs(dir_).ok()) return;
  (void)WriteFileAtomic(EntryPath(path), entry.dump(), 0600);
}

std::string HashCache::DefaultDir() {
  std::string base = EnvOr("XDG_CACHE_HOME", "");
  if (base.empty()) {
    std::string home = EnvOr("HOME", "");
    if (home.empty()) return "";
    base = home + "/.cache";
  }
  return base + "/trainyard/hashes";
}

}  // namespace yard
