#include "common/files.h"

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace yard {

StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoStatus("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status WriteFileAtomic(const std::string& path, std::string_view data, int mode) {
  std::string tmp = path + ".tmp-" + std::to_string(getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoStatus("cannot create " + tmp);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      Status s = ErrnoStatus("cannot write " + tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return s;
    }
    off += static_cast<size_t>(n);
  }
  ::fchmod(fd, mode);
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status s = ErrnoStatus("cannot rename " + tmp + " to " + path);
    ::unlink(tmp.c_str());
    return s;
  }
  return Status::Ok();
}

Status MakeDirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return Internal("cannot create folder " + path + ": " + ec.message());
  return Status::Ok();
}

std::vector<iovec> WriteWindow(const std::vector<iovec>& iov, size_t at, size_t max_bytes) {
  std::vector<iovec> window;
  for (size_t left = max_bytes; at < iov.size() && left > 0 && window.size() < IOV_MAX; ++at) {
    size_t take = std::min(left, iov[at].iov_len);
    window.push_back({iov[at].iov_base, take});
    left -= take;
  }
  return window;
}

Status WriteVectorAll(int fd, std::vector<iovec> iov, std::optional<uint64_t> offset,
                      const std::string& what, const std::string& folder) {
  std::erase_if(iov, [](const iovec& v) { return v.iov_len == 0; });
  size_t at = 0;
  while (at < iov.size()) {
    std::vector<iovec> window = WriteWindow(iov, at, kMaxBytesPerWrite);
    int count = static_cast<int>(window.size());
    ssize_t n = offset ? ::pwritev(fd, window.data(), count, static_cast<off_t>(*offset))
                       : ::writev(fd, window.data(), count);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(what, folder);
    if (offset) *offset += static_cast<uint64_t>(n);
    for (size_t left = static_cast<size_t>(n); left > 0;) {
      size_t take = std::min(left, iov[at].iov_len);
      iov[at].iov_base = static_cast<char*>(iov[at].iov_base) + take;
      iov[at].iov_len -= take;
      left -= take;
      if (iov[at].iov_len == 0) ++at;
    }
  }
  return Status::Ok();
}

StatusOr<size_t> ReadAt(int fd, char* out, size_t size, uint64_t offset, const std::string& what) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, out + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(what);
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return (v && *v) ? std::string(v) : fallback;
}

std::string SelfExecutable() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("yard") : p.string();
}

namespace {
// The GNU build id (hex) among the notes in [p, end), "" if none.
std::string BuildIdInNotes(const char* p, const char* end) {
  while (p + sizeof(ElfW(Nhdr)) <= end) {
    const auto* n = reinterpret_cast<const ElfW(Nhdr)*>(p);
    const char* name = p + sizeof(ElfW(Nhdr));
    const char* desc = name + ((n->n_namesz + 3) & ~3u);
    if (desc + n->n_descsz > end) return "";
    if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && std::string(name, 3) == "GNU") {
      static const char* kHex = "0123456789abcdef";
      std::string id;
      for (size_t k = 0; k < n->n_descsz; ++k) {
        unsigned char c = static_cast<unsigned char>(desc[k]);
        id += kHex[c >> 4];
        id += kHex[c & 15];
      }
      return id;
    }
    p = desc + ((n->n_descsz + 3) & ~3u);
  }
  return "";
}

// The GNU build-id note among a loaded object's PT_NOTE segments.
int FindBuildId(struct dl_phdr_info* info, size_t, void* out) {
  auto* id = static_cast<std::string*>(out);
  for (int i = 0; i < info->dlpi_phnum && id->empty(); ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_NOTE) continue;
    const char* p = reinterpret_cast<const char*>(info->dlpi_addr + ph.p_vaddr);
    *id = BuildIdInNotes(p, p + ph.p_memsz);
  }
  return 1;  // only the first object: the program itself
}

// `size` bytes of `f` at `offset`, "" when the file is shorter.
std::string ReadAt(std::ifstream& f, uint64_t offset, size_t size) {
  std::string buf(size, '\0');
  f.seekg(static_cast<std::streamoff>(offset));
  if (!f.read(buf.data(), static_cast<std::streamsize>(size))) return "";
  return buf;
}
}  // namespace

std::string BuildIdOf(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::string head = ReadAt(f, 0, sizeof(ElfW(Ehdr)));
  if (head.size() != sizeof(ElfW(Ehdr)) || head.compare(0, SELFMAG, ELFMAG) != 0) return "";
  const auto* eh = reinterpret_cast<const ElfW(Ehdr)*>(head.data());
  if (eh->e_ident[EI_CLASS] != (sizeof(void*) == 8 ? ELFCLASS64 : ELFCLASS32) ||
      eh->e_phentsize != sizeof(ElfW(Phdr)))
    return "";
  std::string phdrs = ReadAt(f, eh->e_phoff, size_t{eh->e_phnum} * sizeof(ElfW(Phdr)));
  for (size_t i = 0; i * sizeof(ElfW(Phdr)) < phdrs.size(); ++i) {
    const auto* ph = reinterpret_cast<const ElfW(Phdr)*>(phdrs.data()) + i;
    if (ph->p_type != PT_NOTE || ph->p_filesz > (1u << 20)) continue;
    std::string notes = ReadAt(f, ph->p_offset, ph->p_filesz);
    std::string id = BuildIdInNotes(notes.data(), notes.data() + notes.size());
    if (!id.empty()) return id;
  }
  return "";
}

std::string SelfBuildId() {
  std::string id;
  dl_iterate_phdr(FindBuildId, &id);
  return id;
}

std::string PortableYard(const std::string& yard) {
  std::string portable = yard.substr(0, yard.rfind('/') + 1) + "yard-portable";
  return ::access(portable.c_str(), X_OK) == 0 ? portable : yard;
}

std::string PortableYard() { return PortableYard(SelfExecutable()); }

std::string DefaultYardHome() {
  std::string home = EnvOr("YARD_HOME", "");
  if (!home.empty()) return home;
  return EnvOr("HOME", "/tmp") + "/.local/share/trainyard";
}

std::string LocalUserName() {
  if (passwd* pw = getpwuid(getuid())) return pw->pw_name;
  return EnvOr("USER", "local");
}

}  // namespace yard
