#include "common/manifest.h"

#include <algorithm>
#include <deque>
#include <initializer_list>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "common/hashing.h"

namespace yard {
namespace {

using nlohmann::json;

constexpr int kManifestVersion = 1;
constexpr uint32_t kPermissionBits = 0777;
// Links followed while resolving one target before it is called a loop
// (Linux's own limit is 40).
constexpr int kMaxLinkExpansions = 40;

// The path quoted and escaped for an error message; never throws, even on
// bytes that are not UTF-8.
std::string Quote(std::string_view s) {
  return json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
}

Status EntryError(std::string_view path, const std::string& what) {
  return InvalidArgument("manifest entry " + Quote(path) + ": " + what);
}

// ---- JSON --------------------------------------------------------------

bool IsUint(const json& v) {
  return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
}

StatusOr<uint64_t> UintField(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return InvalidArgument(std::string("missing \"") + key + "\"");
  if (!IsUint(*it)) return InvalidArgument(std::string("\"") + key + "\" must be an integer >= 0");
  return it->get<uint64_t>();
}

StatusOr<std::string> StringField(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return InvalidArgument(std::string("missing \"") + key + "\"");
  if (!it->is_string()) return InvalidArgument(std::string("\"") + key + "\" must be a string");
  return it->get<std::string>();
}

// Refuses keys outside `allowed`, so that a misspelt field is an error
// rather than silently ignored; new fields come with a new version.
Status CheckKeys(const json& j, std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, value] : j.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return InvalidArgument("unknown key " + Quote(key));
    }
  }
  return Status::Ok();
}

StatusOr<ChunkRef> ChunkFromJson(const json& j) {
  if (!j.is_array() || j.size() != 2 || !j[0].is_string() || !IsUint(j[1])) {
    return InvalidArgument("must be a [\"<sha256>\", size] pair");
  }
  ChunkRef ref{j[0].get<std::string>(), j[1].get<uint64_t>()};
  if (!IsSha256Hex(ref.hash)) return InvalidArgument("hash is not 64 lower-case hex digits");
  return ref;
}

StatusOr<std::vector<ChunkRef>> ChunksFromJson(const json& j) {
  if (!j.is_array()) return InvalidArgument("\"chunks\" must be an array");
  std::vector<ChunkRef> chunks;
  chunks.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    StatusOr<ChunkRef> ref = ChunkFromJson(j[i]);
    if (!ref.ok()) return ref.status().WithContext("chunks[" + std::to_string(i) + "]");
    chunks.push_back(std::move(*ref));
  }
  return chunks;
}

// Fills the link target or the chunk list of `e`, whichever `j` has.
Status ContentFromJson(const json& j, FileEntry& e) {
  auto link = j.find("link");
  auto chunks = j.find("chunks");
  if (link != j.end()) {
    if (!link->is_string() || link->get_ref<const std::string&>().empty()) {
      return InvalidArgument("\"link\" must be a non-empty string");
    }
    if (chunks != j.end() && !chunks->empty()) {
      return InvalidArgument("a symlink entry has no \"chunks\"");
    }
    e.link_target = link->get<std::string>();
    return Status::Ok();
  }
  if (chunks == j.end()) return InvalidArgument("missing \"chunks\" (or \"link\")");
  YARD_ASSIGN_OR_RETURN(e.chunks, ChunksFromJson(*chunks));
  return Status::Ok();
}

StatusOr<FileEntry> EntryFromJson(const json& j) {
  if (!j.is_object()) return InvalidArgument("must be an object");
  YARD_RETURN_IF_ERROR(CheckKeys(j, {"path", "mode", "size", "chunks", "link"}));
  FileEntry e;
  YARD_ASSIGN_OR_RETURN(e.path, StringField(j, "path"));
  YARD_ASSIGN_OR_RETURN(uint64_t mode, UintField(j, "mode"));
  if (mode > 07777) return InvalidArgument("\"mode\" " + std::to_string(mode) + " is not a mode");
  e.mode = static_cast<uint32_t>(mode);
  YARD_ASSIGN_OR_RETURN(e.size, UintField(j, "size"));
  YARD_RETURN_IF_ERROR(ContentFromJson(j, e));
  return e;
}

StatusOr<Manifest> ManifestFromJson(const json& j) {
  if (!j.is_object()) return InvalidArgument("manifest: must be a JSON object");
  auto version = j.find("version");
  if (version == j.end()) return InvalidArgument("manifest: missing \"version\"");
  if (!version->is_number_integer() || version->get<int64_t>() != kManifestVersion) {
    return InvalidArgument("manifest: unsupported version " + version->dump() +
                           " (this build reads version " + std::to_string(kManifestVersion) + ")");
  }
  Status keys = CheckKeys(j, {"version", "files"});
  if (!keys.ok()) return keys.WithContext("manifest");
  auto files = j.find("files");
  if (files == j.end() || !files->is_array()) {
    return InvalidArgument("manifest: \"files\" must be an array");
  }
  Manifest m;
  m.files.reserve(files->size());
  for (size_t i = 0; i < files->size(); ++i) {
    StatusOr<FileEntry> e = EntryFromJson((*files)[i]);
    if (!e.ok()) return e.status().WithContext("manifest: files[" + std::to_string(i) + "]");
    m.files.push_back(std::move(*e));
  }
  return m;
}

// ---- Validation ---------------------------------------------------------

bool IsValidUtf8(std::string_view s) {
  static constexpr uint32_t kMinCodePoint[] = {0, 0, 0x80, 0x800, 0x10000};
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80             ? 1
                 : (c & 0xe0) == 0xc0 ? 2
                 : (c & 0xf0) == 0xe0 ? 3
                 : (c & 0xf8) == 0xf0 ? 4
                                      : 0;
    if (len == 0 || i + len > s.size()) return false;
    uint32_t cp = len == 1 ? c : c & (0x7f >> len);
    for (size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (len > 1 && (cp < kMinCodePoint[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))) {
      return false;
    }
    i += len;
  }
  return true;
}

// Why `path` is not a safe relative path, or nullptr if it is.
const char* PathProblem(std::string_view path) {
  if (path.empty()) return "empty path";
  if (path.front() == '/') return "absolute path";
  if (path.find('\0') != std::string_view::npos) return "NUL in path";
  if (path.find('\\') != std::string_view::npos) return "backslash in path";
  size_t start = 0;
  for (;;) {
    size_t slash = path.find('/', start);
    std::string_view part = path.substr(start, slash - start);
    if (part.empty()) return "empty path component";
    if (part == ".") return "'.' path component";
    if (part == "..") return "'..' path component";
    if (slash == std::string_view::npos) return nullptr;
    start = slash + 1;
  }
}

std::vector<std::string_view> Split(std::string_view s) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (size_t slash; (slash = s.find('/', start)) != std::string_view::npos; start = slash + 1) {
    parts.push_back(s.substr(start, slash - start));
  }
  parts.push_back(s.substr(start));
  return parts;
}

std::string Join(const std::vector<std::string_view>& parts) {
  std::string out;
  for (auto part : parts) {
    if (!out.empty()) out += '/';
    out += part;
  }
  return out;
}

Status CheckLinkShape(const FileEntry& e) {
  const std::string& t = e.link_target;
  if (!e.chunks.empty() || e.size != 0) return EntryError(e.path, "a symlink has no content");
  if (t.find('\0') != std::string::npos) return EntryError(e.path, "NUL in symlink target");
  if (t.front() == '/') return EntryError(e.path, "symlink target " + Quote(t) + " is absolute");
  if (!IsValidUtf8(t)) return EntryError(e.path, "symlink target is not valid UTF-8");
  return Status::Ok();
}

Status CheckChunks(const FileEntry& e) {
  uint64_t sum = 0;
  for (const ChunkRef& c : e.chunks) {
    if (!IsSha256Hex(c.hash)) {
      return EntryError(e.path, "chunk hash " + Quote(c.hash) + " is not a sha256");
    }
    if (c.size == 0) return EntryError(e.path, "empty chunk");
    if (__builtin_add_overflow(sum, c.size, &sum)) {
      return EntryError(e.path, "chunk sizes overflow");
    }
  }
  if (sum != e.size) {
    return EntryError(
        e.path, "size " + std::to_string(e.size) + " != sum of chunk sizes " + std::to_string(sum));
  }
  return Status::Ok();
}

Status CheckEntry(const FileEntry& e, const ManifestLimits& limits) {
  if (e.path.size() > limits.max_path_length) {
    return EntryError(e.path.substr(0, 64) + "...",
                      "path longer than " + std::to_string(limits.max_path_length));
  }
  if (const char* problem = PathProblem(e.path)) return EntryError(e.path, problem);
  if (!IsValidUtf8(e.path)) return EntryError(e.path, "path is not valid UTF-8");
  if ((e.mode & ~kPermissionBits) != 0) {
    return EntryError(e.path, "mode " + std::to_string(e.mode) + " has bits beyond rwxrwxrwx");
  }
  return e.is_link() ? CheckLinkShape(e) : CheckChunks(e);
}

using EntryIndex = std::unordered_map<std::string_view, const FileEntry*>;

// Rejects an entry below another entry: below a symlink it would be written
// through the link; below a file it cannot exist.
Status CheckAncestors(const FileEntry& e, const EntryIndex& index) {
  for (size_t slash = e.path.find('/'); slash != std::string::npos;
       slash = e.path.find('/', slash + 1)) {
    auto it = index.find(std::string_view(e.path).substr(0, slash));
    if (it == index.end()) continue;
    if (it->second->is_link()) {
      return EntryError(e.path, "passes through symlink " + Quote(it->second->path));
    }
    return EntryError(e.path, "is below " + Quote(it->second->path) + ", which is a file");
  }
  return Status::Ok();
}

// Resolves the target of link `e` from the link's folder, component by
// component, expanding links of the manifest as the kernel would: a purely
// lexical "a/.." is wrong when a is itself a link.
Status CheckLinkStaysInside(const FileEntry& e, const EntryIndex& index) {
  std::vector<std::string_view> at = Split(e.path);
  at.pop_back();
  std::deque<std::string_view> todo;
  for (auto part : Split(e.link_target)) todo.push_back(part);
  int expansions = 0;
  while (!todo.empty()) {
    std::string_view part = todo.front();
    todo.pop_front();
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (at.empty()) {
        return EntryError(e.path,
                          "symlink target " + Quote(e.link_target) + " points outside the root");
      }
      at.pop_back();
      continue;
    }
    at.push_back(part);
    auto it = index.find(Join(at));
    if (it == index.end() || !it->second->is_link()) continue;
    if (++expansions > kMaxLinkExpansions) return EntryError(e.path, "symlink loop");
    at.pop_back();
    auto next = Split(it->second->link_target);
    todo.insert(todo.begin(), next.begin(), next.end());
  }
  return Status::Ok();
}

Status CheckTotals(const Manifest& m, const ManifestLimits& limits) {
  if (m.files.size() > limits.max_files) {
    return ResourceExhausted("manifest: " + std::to_string(m.files.size()) +
                             " entries, more than the limit of " +
                             std::to_string(limits.max_files));
  }
  uint64_t total = 0;
  for (const FileEntry& e : m.files) {
    if (__builtin_add_overflow(total, e.size, &total) || total > limits.max_total_bytes) {
      return ResourceExhausted("manifest: total size exceeds the limit of " +
                               std::to_string(limits.max_total_bytes) + " bytes");
    }
  }
  return Status::Ok();
}

}  // namespace

uint64_t Manifest::TotalBytes() const {
  uint64_t total = 0;
  for (const FileEntry& e : files) total += e.size;
  return total;
}

std::vector<std::string> Manifest::ChunkHashes() const {
  std::vector<std::string> out;
  std::unordered_set<std::string_view> seen;
  for (const FileEntry& e : files) {
    for (const ChunkRef& c : e.chunks) {
      if (seen.insert(c.hash).second) out.push_back(c.hash);
    }
  }
  return out;
}

nlohmann::json FileEntryToJson(const FileEntry& e) {
  json j = {{"path", e.path}, {"mode", e.mode}, {"size", e.size}};
  if (e.is_link()) {
    j["link"] = e.link_target;
    return j;
  }
  json chunks = json::array();
  for (const ChunkRef& c : e.chunks) chunks.push_back(json::array({c.hash, c.size}));
  j["chunks"] = std::move(chunks);
  return j;
}

nlohmann::json Manifest::ToJson() const {
  json list = json::array();
  for (const FileEntry& e : files) list.push_back(FileEntryToJson(e));
  return {{"version", kManifestVersion}, {"files", std::move(list)}};
}

StatusOr<FileEntry> FileEntryFromJson(const nlohmann::json& j) {
  try {
    StatusOr<FileEntry> e = EntryFromJson(j);
    if (!e.ok()) return e.status().WithContext("manifest entry");
    return e;
  } catch (const json::exception& ex) {  // not expected: types are checked first
    return InvalidArgument(std::string("manifest entry: ") + ex.what());
  }
}

StatusOr<Manifest> Manifest::FromJson(const nlohmann::json& j) {
  try {
    return ManifestFromJson(j);
  } catch (const json::exception& ex) {  // not expected: types are checked first
    return InvalidArgument(std::string("manifest: ") + ex.what());
  }
}

nlohmann::json ArtifactPartToJson(const ArtifactPart& p) {
  json chunks = json::array();
  for (const ChunkRef& c : p.chunks) chunks.push_back(json::array({c.hash, c.size}));
  return {{"kind", "artifact_part"},
          {"dir", p.dir},
          {"path", p.path},
          {"offset", p.offset},
          {"chunks", std::move(chunks)}};
}

StatusOr<ArtifactPart> ArtifactPartFromJson(const nlohmann::json& j) {
  constexpr uint64_t kMaxOffset = uint64_t{1} << 53;  // exact in every JSON reader
  if (!j.is_object()) return InvalidArgument("artifact_part: must be an object");
  for (const auto& [key, value] : j.items())
    if (key != "kind" && key != "dir" && key != "path" && key != "offset" && key != "chunks" &&
        key != "instance" && key != "seq" && key != "time")
      return InvalidArgument("artifact_part: unknown key \"" + key + "\"");
  if (!j.contains("dir") || !j["dir"].is_string() || !j.contains("path") || !j["path"].is_string())
    return InvalidArgument("artifact_part: needs a string \"dir\" and \"path\"");
  auto whole = [](const json& v) {  // parsed: unsigned; built in code: maybe signed
    return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
  };
  if (!j.contains("offset") || !whole(j["offset"]) || j["offset"].get<uint64_t>() > kMaxOffset)
    return InvalidArgument("artifact_part: \"offset\" must be a whole number up to 2^53");
  if (!j.contains("chunks") || !j["chunks"].is_array())
    return InvalidArgument("artifact_part: needs a list \"chunks\"");
  // The path and chunks are checked as a file entry's.
  json as_entry = {{"path", j["path"]}, {"mode", 0644}, {"size", 0}, {"chunks", j["chunks"]}};
  uint64_t size = 0;
  for (const json& c : j["chunks"]) {
    if (!c.is_array() || c.size() != 2 || !whole(c[1])) continue;  // refused below
    if (c[1].get<uint64_t>() > kMaxOffset - size)
      return InvalidArgument("artifact_part: the chunks end past 2^53 bytes");
    size += c[1].get<uint64_t>();
  }
  as_entry["size"] = size;
  YARD_ASSIGN_OR_RETURN(FileEntry e, FileEntryFromJson(as_entry));
  Manifest m;
  m.files.push_back(e);
  YARD_RETURN_IF_ERROR(ValidateManifest(m).WithContext("artifact_part"));
  ArtifactPart p{j["dir"], e.path, j["offset"], std::move(e.chunks)};
  if (p.offset + size > kMaxOffset)
    return InvalidArgument("artifact_part: the chunks end past 2^53 bytes");
  return p;
}

bool IsSafeRelativePath(const std::string& path) { return PathProblem(path) == nullptr; }

Status ValidateManifest(const Manifest& m, const ManifestLimits& limits) {
  YARD_RETURN_IF_ERROR(CheckTotals(m, limits));
  EntryIndex index;
  index.reserve(m.files.size());
  for (const FileEntry& e : m.files) {
    YARD_RETURN_IF_ERROR(CheckEntry(e, limits));
    if (!index.emplace(e.path, &e).second) return EntryError(e.path, "duplicate path");
  }
  for (const FileEntry& e : m.files) {
    YARD_RETURN_IF_ERROR(CheckAncestors(e, index));
    if (e.is_link()) YARD_RETURN_IF_ERROR(CheckLinkStaysInside(e, index));
  }
  return Status::Ok();
}

}  // namespace yard
