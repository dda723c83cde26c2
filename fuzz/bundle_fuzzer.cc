// Materializing a bundle (common/bundle.h) from any manifest JSON: whatever
// it is given, Materialize writes nothing outside its destination folder
// and leaves no link there that resolves outside it. Chunks: the hashes of
// "", "a" and "print(1)\n" are served, any other hash is missing.
#include <filesystem>
#include <map>

#include "common/bundle.h"
#include "common/hashing.h"
#include "fuzz/fuzz_util.h"

using namespace yard;
namespace fs = std::filesystem;

namespace {

const std::map<std::string, std::string>& Chunks() {
  static const auto* chunks = [] {
    auto* m = new std::map<std::string, std::string>;
    for (std::string s : {"", "a", "print(1)\n"}) (*m)[Sha256Hex(s)] = s;
    return m;
  }();
  return *chunks;
}

StatusOr<std::string> Source(const std::string& hash) {
  auto it = Chunks().find(hash);
  if (it == Chunks().end()) return NotFound("no chunk " + hash);
  return it->second;
}

bool Inside(const fs::path& p, const fs::path& root) {
  auto rel = p.lexically_relative(root);
  return !rel.empty() && *rel.begin() != "..";
}

// Every entry under `scratch` is `dest` or below it; every entry below
// `dest` resolves (following links) to a place inside `dest`.
void CheckContained(const fs::path& scratch, const fs::path& dest) {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(scratch, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    fs::path p = it->path();
    if (p != dest && !Inside(p, dest))
      fuzz::Fail("Materialize wrote outside its folder: " + p.string());
    if (p == dest) continue;
    fs::path real = fs::weakly_canonical(p, ec);
    if (!ec && real != fs::canonical(dest) && !Inside(real, fs::canonical(dest)))
      fuzz::Fail("an entry resolves outside the folder: " + p.string() + " -> " + real.string());
    ec.clear();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json j = fuzz::ParseJson(fuzz::AsView(data, size));
  if (j.is_discarded()) return 0;
  StatusOr<Manifest> m = Manifest::FromJson(j);
  // Bounded so that one input cannot fill the disk or take seconds.
  if (!m.ok() || m->files.size() > 64 || m->TotalBytes() > (1 << 16)) return 0;
  fs::path scratch = fuzz::ScratchDir();
  fs::path dest = scratch / "dest";
  (void)Materialize(*m, dest.string(), Source);
  CheckContained(scratch, dest);
  return 0;
}
