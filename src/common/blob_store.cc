#include "common/blob_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cassert>
#include <cerrno>
#include <filesystem>
#include <optional>

#include "common/files.h"
#include "common/hashing.h"

namespace yard {
namespace {

// `root` is the store's folder, named when its disk is full. At most
// kMaxBytesPerWrite per call, as the page cache is cheapest to fill that way
// (common/files.h).
Status WriteAll(int fd, std::string_view data, const std::string& path, const std::string& root) {
  return WriteVectorAll(fd, {{const_cast<char*>(data.data()), data.size()}}, std::nullopt,
                        "writing " + path, root);
}

Status ReadAll(int fd, std::string& out, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoStatus("stat " + path);
  out.resize(static_cast<size_t>(st.st_size));
  size_t len = 0;
  for (;;) {
    if (len == out.size()) out.resize(out.size() + 4096);  // grew since fstat
    ssize_t n = ::read(fd, out.data() + len, out.size() - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("reading " + path);
    if (n == 0) break;
    len += static_cast<size_t>(n);
  }
  out.resize(len);
  return Status::Ok();
}

// Unique among threads and processes sharing the store.
std::string TempName(const std::string& dir, const std::string& hash) {
  static std::atomic<uint64_t> counter{0};
  return dir + "/.tmp-" + hash.substr(0, 16) + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(counter.fetch_add(1));
}

// Read-only from the start (the writer keeps its descriptor): a blob never
// changes once named, and nothing should open one for writing by mistake.
Status WriteNew(const std::string& path, std::string_view bytes, const std::string& root) {
  ScopedFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444));
  if (fd.get() < 0) return ErrnoStatus("creating " + path, root);
  YARD_RETURN_IF_ERROR(WriteAll(fd.get(), bytes, path, root));
  if (fd.Close() != 0) return ErrnoStatus("closing " + path, root);
  return Status::Ok();
}

}  // namespace

StatusOr<BlobStore> BlobStore::Open(const std::string& root) {
  std::error_code ec;
  std::filesystem::create_directories(root, ec);
  if (ec) return Internal("creating blob store " + root + ": " + ec.message());
  return BlobStore(root);
}

std::string BlobStore::PathOf(const std::string& hash) const {
  assert(IsSha256Hex(hash));
  return root_ + "/" + hash.substr(0, 2) + "/" + hash;
}

bool BlobStore::Has(const std::string& hash) const {
  struct stat st;
  return IsSha256Hex(hash) && ::stat(PathOf(hash).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::vector<std::string> BlobStore::Missing(const std::vector<std::string>& hashes) const {
  std::vector<std::string> missing;
  for (const std::string& h : hashes) {
    if (!Has(h)) missing.push_back(h);
  }
  return missing;
}

// No fsync: chunks are many and content-addressed, and fsync per chunk would
// bound upload speed by the disk's flush latency. The rename makes a blob
// appear whole or not at all to readers and across a process crash; after a
// power loss a blob may come back truncated, which the size check below
// repairs on the next Put and every consumer's hash check catches.
Status BlobStore::Put(const std::string& hash, std::string_view bytes) {
  if (!IsSha256Hex(hash)) return InvalidArgument("blob name " + hash + " is not a sha256");
  return PutHashed(hash, bytes, Sha256Hex(bytes));
}

Status BlobStore::PutHashed(const std::string& hash, std::string_view bytes,
                            const std::string& bytes_sha256) {
  if (!IsSha256Hex(hash)) return InvalidArgument("blob name " + hash + " is not a sha256");
  if (bytes_sha256 != hash) {
    return InvalidArgument("blob content does not match its name " + hash);
  }
  std::string path = PathOf(hash);
  struct stat st;
  {
    std::lock_guard<std::mutex> lock(*mu_);
    if (::stat(path.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) == bytes.size()) {
      ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0);  // uploaded again: in use
      return Status::Ok();
    }
  }
  std::string dir = root_ + "/" + hash.substr(0, 2);
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
    return ErrnoStatus("creating " + dir, root_);
  std::string tmp = TempName(dir, hash);
  Status s = WriteNew(tmp, bytes, root_);
  if (s.ok()) {
    std::lock_guard<std::mutex> lock(*mu_);
    if (::rename(tmp.c_str(), path.c_str()) != 0) s = ErrnoStatus("renaming to " + path, root_);
  }
  if (!s.ok()) ::unlink(tmp.c_str());
  return s;
}

bool BlobStore::Touch(const std::string& hash) {
  if (!IsSha256Hex(hash)) return false;
  std::lock_guard<std::mutex> lock(*mu_);
  return ::utimensat(AT_FDCWD, PathOf(hash).c_str(), nullptr, 0) == 0;
}

std::vector<std::string> BlobStore::OlderThan(std::filesystem::file_time_type cutoff) const {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& sub : fs::directory_iterator(root_, ec)) {
    std::string prefix = sub.path().filename().string();
    if (prefix.size() != 2 || !sub.is_directory(ec)) continue;
    for (const auto& f : fs::directory_iterator(sub.path(), ec)) {
      std::string name = f.path().filename().string();
      bool ours = IsSha256Hex(name) || name.rfind(".tmp-", 0) == 0;
      fs::file_time_type t = f.last_write_time(ec);
      if (ours && !ec && t < cutoff) out.push_back(prefix + "/" + name);
    }
  }
  return out;
}

bool BlobStore::RemoveIfOlderThan(const std::string& name, std::filesystem::file_time_type cutoff,
                                  uint64_t* bytes) {
  std::string path = root_ + "/" + name;
  std::lock_guard<std::mutex> lock(*mu_);
  std::error_code ec;
  std::filesystem::file_time_type t = std::filesystem::last_write_time(path, ec);
  if (ec || t >= cutoff) return false;
  uint64_t size = std::filesystem::file_size(path, ec);
  if (ec || ::unlink(path.c_str()) != 0) return false;
  *bytes += size;
  return true;
}

StatusOr<ScopedFd> BlobStore::OpenToRead(const std::string& hash, uint64_t* size) const {
  if (!IsSha256Hex(hash)) return InvalidArgument("blob name " + hash + " is not a sha256");
  std::string path = PathOf(hash);
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0 && errno == ENOENT) return NotFound("blob " + hash + " not found");
  if (fd.get() < 0) return ErrnoStatus("opening " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus("stat " + path);
  *size = static_cast<uint64_t>(st.st_size);
  return fd;
}

StatusOr<std::string> BlobStore::Get(const std::string& hash) const {
  if (!IsSha256Hex(hash)) return InvalidArgument("blob name " + hash + " is not a sha256");
  std::string path = PathOf(hash);
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0 && errno == ENOENT) return NotFound("blob " + hash + " not found");
  if (fd.get() < 0) return ErrnoStatus("opening " + path);
  std::string out;
  YARD_RETURN_IF_ERROR(ReadAll(fd.get(), out, path));
  return out;
}

}  // namespace yard
