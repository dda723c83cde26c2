#include "common/bundle.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <filesystem>
#include <memory>
#include <optional>
#include <thread>
#include <unordered_set>

#include "common/file_copy.h"
#include "common/files.h"
#include "common/hashing.h"

namespace yard {
namespace {

// ---- gitignore patterns --------------------------------------------------

// Matches `c` against the bracket expression at the start of `p`, setting
// `len` to its length; -1 when `p` has no closing ']' (then '[' is literal).
int MatchClass(std::string_view p, char c, size_t& len) {
  auto uc = static_cast<unsigned char>(c);
  size_t i = 1;
  bool negate = i < p.size() && (p[i] == '!' || p[i] == '^');
  if (negate) ++i;
  bool matched = false;
  for (size_t first = i; i < p.size(); ++i) {
    if (p[i] == ']' && i > first) {
      len = i + 1;
      return matched != negate && c != '/';
    }
    auto lo = static_cast<unsigned char>(p[i] == '\\' && i + 1 < p.size() ? p[++i] : p[i]);
    auto hi = lo;
    if (i + 2 < p.size() && p[i + 1] == '-' && p[i + 2] != ']') {
      hi = static_cast<unsigned char>(p[i + 2]);
      i += 2;
    }
    if (lo <= uc && uc <= hi) matched = true;
  }
  return -1;
}

// gitignore globbing of a whole path `t`: '*', '?' and classes never match
// '/'; '\' escapes the next character. Every '*' run tries each place it
// could end, so without memory a pattern like "*?*t**?*?*" takes time
// exponential in its stars (seconds for one path; found by
// fuzz/ignore_fuzzer.cc). Each (pattern position, path position) is tried
// once: a failure is remembered, which bounds a match by |p| * |t| tries.
class Glob {
 public:
  Glob(std::string_view p, std::string_view t) : p_(p), t_(t) {}
  bool Matches() { return Match(0, 0); }

 private:
  // The match of p_[pi..] against t_[ti..]. pi is always at a component
  // boundary or just after a '*' run.
  bool Match(size_t pi, size_t ti) {
    if (p_.find('*', pi) == std::string_view::npos) return MatchFrom(pi, ti);  // no choice left
    uint64_t state = uint64_t{pi} << 32 | ti;
    if (failed_.count(state)) return false;
    bool ok = MatchFrom(pi, ti);
    if (!ok) failed_.insert(state);
    return ok;
  }

  bool MatchFrom(size_t pi, size_t ti) {
    while (pi < p_.size()) {
      char c = p_[pi];
      if (c == '*') {
        size_t end = p_.find_first_not_of('*', pi);
        if (end == std::string_view::npos) end = p_.size();
        bool component =
            end - pi == 2 && (pi == 0 || p_[pi - 1] == '/') && (end == p_.size() || p_[end] == '/');
        return component ? DoubleStar(end, ti) : Star(end, ti);
      }
      if (ti == t_.size()) return false;
      size_t len = 1;
      int in_class = c == '[' ? MatchClass(p_.substr(pi), t_[ti], len) : -1;
      if (in_class == 0) return false;
      if (in_class < 0) {
        bool escaped = c == '\\' && pi + 1 < p_.size();
        if (escaped) c = p_[++pi];
        bool any = c == '?' && !escaped;
        if (any ? t_[ti] == '/' : c != t_[ti]) return false;
      }
      pi += len;
      ++ti;
    }
    return ti == t_.size();
  }

  // "**" as a whole component: "**" at the end matches everything below,
  // "**/" matches zero or more folders. `rest` is just after the "**".
  bool DoubleStar(size_t rest, size_t ti) {
    if (rest == p_.size()) return true;
    ++rest;  // the '/'
    for (size_t k = ti;;) {
      if (Match(rest, k)) return true;
      size_t slash = t_.find('/', k);
      if (slash == std::string_view::npos) return false;
      k = slash + 1;
    }
  }

  // A run of '*' inside a component: any characters but '/'.
  bool Star(size_t rest, size_t ti) {
    for (size_t k = ti;; ++k) {
      if (Match(rest, k)) return true;
      if (k == t_.size() || t_[k] == '/') return false;
    }
  }

  std::string_view p_, t_;
  std::unordered_set<uint64_t> failed_;  // pi << 32 | ti of each failed try
};

std::string_view StripLine(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  // Trailing spaces are dropped unless escaped with a backslash.
  while (!line.empty() && line.back() == ' ' &&
         !(line.size() >= 2 && line[line.size() - 2] == '\\')) {
    line.remove_suffix(1);
  }
  return line;
}

std::string_view BaseName(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

}  // namespace

void IgnoreRules::AddFile(const std::string& base, std::string_view contents) {
  while (!contents.empty()) {
    size_t nl = contents.find('\n');
    std::string_view line = StripLine(contents.substr(0, nl));
    contents.remove_prefix(nl == std::string_view::npos ? contents.size() : nl + 1);
    if (line.empty() || line.front() == '#') continue;
    Rule rule;
    rule.base = base;
    rule.negate = line.front() == '!';
    if (rule.negate) line.remove_prefix(1);
    rule.dir_only = !line.empty() && line.back() == '/';
    if (rule.dir_only) line.remove_suffix(1);
    rule.anchored = line.find('/') != std::string_view::npos;
    if (!line.empty() && line.front() == '/') line.remove_prefix(1);
    if (line.empty()) continue;
    rule.pattern = line;
    rules_.push_back(std::move(rule));
  }
}

bool IgnoreRules::IsIgnored(const std::string& path, bool is_dir) const {
  // The last matching rule decides; files below an ignored folder are
  // ignored whatever later rules say, as in git.
  auto decide = [this](std::string_view p, bool dir) {
    for (auto r = rules_.rbegin(); r != rules_.rend(); ++r) {
      if (r->dir_only && !dir) continue;
      std::string_view rel = p;
      if (!r->base.empty()) {
        if (rel.size() <= r->base.size() || rel[r->base.size()] != '/' ||
            rel.substr(0, r->base.size()) != r->base) {
          continue;
        }
        rel.remove_prefix(r->base.size() + 1);
      }
      if (Glob(r->pattern, r->anchored ? rel : BaseName(rel)).Matches()) return !r->negate;
    }
    return false;
  };
  for (size_t slash = path.find('/'); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    if (decide(std::string_view(path).substr(0, slash), true)) return true;
  }
  return decide(path, is_dir);
}

namespace {

// ---- Packing -------------------------------------------------------------

bool AlwaysSkipped(std::string_view name) { return name == ".git" || name == ".yard"; }

StatusOr<std::vector<std::string>> SortedNames(const std::string& dir) {
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) return ErrnoStatus("listing " + dir);
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* e = ::readdir(d.get())) {
    std::string_view name = e->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  if (errno != 0) return ErrnoStatus("listing " + dir);
  std::sort(names.begin(), names.end());
  return names;
}

// Contents of `path` if it is a regular file; empty otherwise.
StatusOr<std::string> ReadIfFile(const std::string& path) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  struct stat st;
  if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return std::string();
  std::string out(static_cast<size_t>(st.st_size), '\0');
  ssize_t n = ::pread(fd.get(), out.data(), out.size(), 0);
  if (n < 0) return ErrnoStatus("reading " + path);
  out.resize(static_cast<size_t>(n));
  return out;
}

class Packer {
 public:
  Packer(const std::string& root, const PackOptions& options, const ChunkSink& sink)
      : root_(root), options_(options), sink_(sink) {}

  StatusOr<Manifest> Run() {
    YARD_RETURN_IF_ERROR(WalkDir(""));
    std::sort(manifest_.files.begin(), manifest_.files.end(),
              [](const FileEntry& a, const FileEntry& b) { return a.path < b.path; });
    Status s = ValidateManifest(manifest_);
    if (!s.ok()) {
      return Status(s.code(), "packing " + root_ + ": " + s.message() +
                                  " (a .yardignore entry can leave it out)");
    }
    return std::move(manifest_);
  }

 private:
  std::string Full(const std::string& rel) const { return rel.empty() ? root_ : root_ + "/" + rel; }

  Status LoadIgnoreFiles(const std::string& rel) {
    for (const char* name : {".gitignore", ".yardignore"}) {
      YARD_ASSIGN_OR_RETURN(std::string contents, ReadIfFile(Full(rel) + "/" + name));
      rules_.AddFile(rel, contents);
    }
    return Status::Ok();
  }

  Status WalkDir(const std::string& rel) {
    if (options_.use_ignore_files) YARD_RETURN_IF_ERROR(LoadIgnoreFiles(rel));
    YARD_ASSIGN_OR_RETURN(std::vector<std::string> names, SortedNames(Full(rel)));
    for (const std::string& name : names) {
      if (AlwaysSkipped(name)) continue;
      YARD_RETURN_IF_ERROR(Visit(rel.empty() ? name : rel + "/" + name));
    }
    return Status::Ok();
  }

  Status Visit(const std::string& rel) {
    std::string full = Full(rel);
    struct stat st;
    if (::lstat(full.c_str(), &st) != 0) {
      return errno == ENOENT ? Status::Ok() : ErrnoStatus("stat " + full);  // gone since listed
    }
    bool is_dir = S_ISDIR(st.st_mode);
    if (options_.use_ignore_files && rules_.IsIgnored(rel, is_dir)) return Status::Ok();
    if (is_dir) return WalkDir(rel);
    if (S_ISLNK(st.st_mode)) return AddLink(rel, st);
    if (S_ISREG(st.st_mode)) return AddFile(rel, st);
    return Status::Ok();  // sockets, fifos, devices have no place in a bundle
  }

  Status AddLink(const std::string& rel, const struct stat& st) {
    std::string full = Full(rel);
    std::string target(PATH_MAX, '\0');
    ssize_t n = ::readlink(full.c_str(), target.data(), target.size());
    if (n < 0) return ErrnoStatus("readlink " + full);
    target.resize(static_cast<size_t>(n));
    FileEntry e;
    e.path = rel;
    e.mode = st.st_mode & 0777;
    e.link_target = std::move(target);
    manifest_.files.push_back(std::move(e));
    return Status::Ok();
  }

  Status AddFile(const std::string& rel, const struct stat& st) {
    FileEntry e;
    e.path = rel;
    e.mode = st.st_mode & 0777;
    const HashCache* cache = options_.known ? options_.hash_cache : nullptr;
    std::optional<std::vector<ChunkRef>> known;
    if (cache) known = cache->Lookup(Full(rel), st);
    if (known) {
      YARD_RETURN_IF_ERROR(AddKnown(Full(rel), *known, &e));
    } else {
      auto read_start = std::chrono::system_clock::now();
      YARD_RETURN_IF_ERROR(
          ChunkFile(Full(rel), options_.chunker, [&](const ChunkRef& ref, std::string_view bytes) {
            e.chunks.push_back(ref);
            e.size += ref.size;
            return sink_(ref, bytes);
          }));
      if (cache) cache->Remember(Full(rel), st, read_start, e.chunks);
    }
    manifest_.files.push_back(std::move(e));
    return Status::Ok();
  }

  Status AddKnown(const std::string& full, const std::vector<ChunkRef>& chunks, FileEntry* e) {
    for (const ChunkRef& ref : chunks) {
      YARD_RETURN_IF_ERROR(options_.known(ref, full, e->size));
      e->chunks.push_back(ref);
      e->size += ref.size;
    }
    return Status::Ok();
  }

  const std::string root_;
  const PackOptions& options_;
  const ChunkSink& sink_;
  IgnoreRules rules_;
  Manifest manifest_;
};

// ---- Materializing -------------------------------------------------------

// The name an entry is written under before its rename: unique per process
// and attempt, so concurrent writers never share one (and O_EXCL catches a
// clash with a real entry of that name).
std::string TempName() {
  static std::atomic<uint64_t> counter{0};
  return ".yard-tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

// Opens (creating as needed) the folder that holds `path`, one component at
// a time and never following a symlink, so nothing already in `dest` (a link
// planted there, say) can lead a write outside it.
StatusOr<ScopedFd> OpenParent(int root, std::string_view path) {
  ScopedFd dir(::dup(root));
  if (dir.get() < 0) return ErrnoStatus("dup");
  for (size_t slash; (slash = path.find('/')) != std::string_view::npos;) {
    std::string part(path.substr(0, slash));
    path.remove_prefix(slash + 1);
    if (::mkdirat(dir.get(), part.c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoStatus("creating folder " + part);
    }
    int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    ScopedFd next(::openat(dir.get(), part.c_str(), flags));
    if (next.get() < 0) return ErrnoStatus("opening folder " + part + " (not following links)");
    dir = std::move(next);
  }
  return dir;
}

StatusOr<std::string> FetchVerified(const ChunkSource& source, const ChunkRef& c) {
  YARD_ASSIGN_OR_RETURN(std::string bytes, source(c.hash));
  if (bytes.size() != c.size || Sha256Hex(bytes) != c.hash) {
    return InvalidArgument("chunk " + c.hash + " from the source does not match its hash or size");
  }
  return bytes;
}

Status WriteAt(int fd, std::string_view data, uint64_t off) {
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("write");
    data.remove_prefix(static_cast<size_t>(n));
    off += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

// A chunk of `e` and where it starts in the file.
struct Placed {
  const ChunkRef* chunk;
  uint64_t offset;
};

// Copies the chunk from the local file `path` into `fd` at `off`; false when
// that file is not the chunk's size (then it is fetched instead).
StatusOr<bool> CopyLocal(const std::string& path, const ChunkRef& c, int fd, uint64_t off) {
  ScopedFd src(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st;
  if (src.get() < 0 || ::fstat(src.get(), &st) != 0 || static_cast<uint64_t>(st.st_size) != c.size)
    return false;
  YARD_RETURN_IF_ERROR(CopyRange(src.get(), 0, fd, off, c.size, path).status());
  return true;
}

// True when the `c.size` bytes at `off` of `fd` hash to `c.hash`; `buffer`
// is scratch space, reused from chunk to chunk.
StatusOr<bool> LandedIntact(int fd, const ChunkRef& c, uint64_t off, std::string* buffer) {
  buffer->resize(c.size);
  YARD_ASSIGN_OR_RETURN(size_t got, ReadAt(fd, buffer->data(), c.size, off,
                                           "reading back a copied chunk to check it"));
  if (got < c.size)
    return Internal("reading back a copied chunk to check it: the file ended early");
  return Sha256Hex(*buffer) == c.hash;
}

// What became of a chunk looked for on this machine.
enum class Landed : char { kIntact, kNotHere, kDamaged };

// Copies each chunk of `placed` that `local` finds into `fd` at its offset
// and hashes it where it landed, while it is still in the cache; on two
// threads when there is much to copy (each takes every other chunk: both
// copy and hash, which are the cost). Returns, per chunk, what became of it.
StatusOr<std::vector<Landed>> CopyAndCheckLocal(int fd, const std::vector<Placed>& placed,
                                                uint64_t size, const ChunkFileSource& local) {
  std::vector<Landed> landed(placed.size(), Landed::kNotHere);
  if (!local) return landed;
  Status errors[2];
  auto work = [&](size_t first, size_t step) {
    std::string buffer;
    for (size_t i = first; i < placed.size(); i += step) {
      const Placed& p = placed[i];
      std::string path = local(p.chunk->hash);
      if (path.empty()) continue;
      StatusOr<bool> copied = CopyLocal(path, *p.chunk, fd, p.offset);
      if (!copied.ok()) return void(errors[first] = copied.status());
      if (!*copied) continue;
      StatusOr<bool> intact = LandedIntact(fd, *p.chunk, p.offset, &buffer);
      if (!intact.ok()) return void(errors[first] = intact.status());
      landed[i] = *intact ? Landed::kIntact : Landed::kDamaged;
    }
  };
  constexpr uint64_t kParallelBytes = 64 << 20;
  if (size >= kParallelBytes && placed.size() > 1 && std::thread::hardware_concurrency() > 1) {
    std::thread other(work, 1, 2);
    work(0, 2);
    other.join();
  } else {
    work(0, 1);
  }
  for (const Status& e : errors) YARD_RETURN_IF_ERROR(e);
  return landed;
}

Status WriteContent(int dir, const std::string& tmp, const FileEntry& e, const ChunkSource& source,
                    const ChunkFileSource& local) {
  int flags = O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  ScopedFd fd(::openat(dir, tmp.c_str(), flags, 0600));
  if (fd.get() < 0) return ErrnoStatus("creating a temporary file");
  std::vector<Placed> placed;
  uint64_t off = 0;
  for (const ChunkRef& c : e.chunks) {
    placed.push_back({&c, off});
    off += c.size;
  }
  YARD_ASSIGN_OR_RETURN(std::vector<Landed> landed,
                        CopyAndCheckLocal(fd.get(), placed, off, local));
  // A damaged local file is detected here, before the entry gets its name,
  // and its chunk fetched from the source instead, as are those not here.
  for (size_t i = 0; i < placed.size(); ++i) {
    const Placed& p = placed[i];
    if (landed[i] == Landed::kIntact) continue;
    StatusOr<std::string> bytes = FetchVerified(source, *p.chunk);
    if (!bytes.ok() && landed[i] == Landed::kDamaged)
      return Status(bytes.status().code(), "chunk " + p.chunk->hash + " on this machine (" +
                                               local(p.chunk->hash) +
                                               ") is damaged: its content "
                                               "does not match its hash, and fetching it again "
                                               "failed: " +
                                               bytes.status().message());
    if (!bytes.ok()) return bytes.status();
    YARD_RETURN_IF_ERROR(WriteAt(fd.get(), *bytes, p.offset));
  }
  if (::fchmod(fd.get(), e.mode) != 0) return ErrnoStatus("chmod");
  if (fd.Close() != 0) return ErrnoStatus("close");
  return Status::Ok();
}

Status MakeLink(int dir, const std::string& tmp, const FileEntry& e) {
  if (::symlinkat(e.link_target.c_str(), dir, tmp.c_str()) != 0) return ErrnoStatus("symlink");
  return Status::Ok();
}

// Creates the entry under a temporary name, then renames it into place.
Status PlaceEntry(int root, const FileEntry& e, const ChunkSource& source,
                  const ChunkFileSource& local) {
  YARD_ASSIGN_OR_RETURN(ScopedFd dir, OpenParent(root, e.path));
  std::string tmp = TempName();
  Status s =
      e.is_link() ? MakeLink(dir.get(), tmp, e) : WriteContent(dir.get(), tmp, e, source, local);
  std::string name(BaseName(e.path));
  if (s.ok() && ::renameat(dir.get(), tmp.c_str(), dir.get(), name.c_str()) != 0) {
    s = ErrnoStatus("rename");
  }
  if (!s.ok()) ::unlinkat(dir.get(), tmp.c_str(), 0);
  return s.WithContext("writing " + e.path);
}

}  // namespace

StatusOr<Manifest> PackDirectory(const std::string& root, const PackOptions& options,
                                 const ChunkSink& sink) {
  return Packer(root, options, sink).Run();
}

Status Materialize(const Manifest& m, const std::string& dest, const ChunkSource& source,
                   const ChunkFileSource& local) {
  YARD_RETURN_IF_ERROR(ValidateManifest(m));
  std::error_code ec;
  std::filesystem::create_directories(dest, ec);
  if (ec) return Internal("creating " + dest + ": " + ec.message());
  ScopedFd root(::open(dest.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (root.get() < 0) return ErrnoStatus("opening " + dest);
  // Files before links, so that no file is ever written through a new link.
  for (bool links : {false, true}) {
    for (const FileEntry& e : m.files) {
      if (e.is_link() == links) YARD_RETURN_IF_ERROR(PlaceEntry(root.get(), e, source, local));
    }
  }
  return Status::Ok();
}

}  // namespace yard
