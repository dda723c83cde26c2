#include "trainer/npy.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <map>
#include <utility>

#include "common/files.h"

namespace yard::trainer {
namespace {

constexpr std::string_view kMagic = "\x93NUMPY";

struct DTypeInfo {
  const char* descr;  // without the byte-order character
  NpyDType type;
};
constexpr DTypeInfo kDTypes[] = {
    {"f4", NpyDType::kFloat32},
    {"f8", NpyDType::kFloat64},
    {"i4", NpyDType::kInt32},
    {"i8", NpyDType::kInt64},
};

// The header is a Python dict literal: {'descr': '<f4', 'fortran_order':
// False, 'shape': (3, 4), }. Values are kept as their source text.
class HeaderParser {
 public:
  explicit HeaderParser(std::string_view text) : s_(text) {}

  StatusOr<std::map<std::string, std::string>> Parse() {
    std::map<std::string, std::string> out;
    if (!Eat('{')) return Error("expected '{'");
    while (!Eat('}')) {
      std::string key, value;
      if (!Quoted(&key)) return Error("expected a quoted key");
      if (!Eat(':')) return Error("expected ':' after '" + key + "'");
      if (!Value(&value)) return Error("bad value for '" + key + "'");
      out[key] = value;
      if (!Eat(',') && !Peek('}')) return Error("expected ',' or '}'");
    }
    return out;
  }

 private:
  void Skip() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n')) ++i_;
  }
  bool Peek(char c) {
    Skip();
    return i_ < s_.size() && s_[i_] == c;
  }
  bool Eat(char c) {
    if (!Peek(c)) return false;
    ++i_;
    return true;
  }
  bool Quoted(std::string* out) {
    Skip();
    if (i_ >= s_.size() || (s_[i_] != '\'' && s_[i_] != '"')) return false;
    size_t end = s_.find(s_[i_], i_ + 1);
    if (end == std::string_view::npos) return false;
    *out = std::string(s_.substr(i_ + 1, end - i_ - 1));
    i_ = end + 1;
    return true;
  }
  // A quoted string (unquoted in *out), a parenthesized tuple, or a bare word.
  bool Value(std::string* out) {
    if (Quoted(out)) return true;
    Skip();
    size_t start = i_;
    if (Eat('(')) {
      size_t end = s_.find(')', i_);
      if (end == std::string_view::npos) return false;
      i_ = end + 1;
    } else {
      while (i_ < s_.size() && s_[i_] != ',' && s_[i_] != '}') ++i_;
    }
    *out = std::string(s_.substr(start, i_ - start));
    while (!out->empty() && out->back() == ' ') out->pop_back();
    return !out->empty();
  }
  Status Error(const std::string& what) {
    return InvalidArgument("header at offset " + std::to_string(i_) + ": " + what);
  }

  std::string_view s_;
  size_t i_ = 0;
};

StatusOr<NpyDType> ParseDescr(const std::string& descr) {
  if (descr.size() == 3 && (descr[0] == '<' || descr[0] == '=' || descr[0] == '|')) {
    for (const auto& d : kDTypes) {
      if (descr.compare(1, 2, d.descr) == 0) return d.type;
    }
  }
  std::string why = descr.size() > 0 && descr[0] == '>' ? " (big-endian)" : "";
  return InvalidArgument("unsupported dtype '" + descr + "'" + why +
                         "; use float32, float64, int32 or int64 (e.g. x.astype('float32'))");
}

// "(3, 4)", "(5,)" -> {3, 4}, {5}.
StatusOr<std::vector<int64_t>> ParseShape(const std::string& text) {
  if (text.size() < 2 || text.front() != '(' || text.back() != ')') {
    return InvalidArgument("bad shape '" + text + "'");
  }
  std::vector<int64_t> shape;
  std::string body = text.substr(1, text.size() - 2);
  size_t pos = 0;
  while (pos < body.size()) {
    size_t comma = body.find(',', pos);
    std::string item =
        body.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? body.size() : comma + 1;
    if (item.find_first_not_of(' ') == std::string::npos) continue;
    char* end = nullptr;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (v < 0 || end == item.c_str() ||
        std::string(end).find_first_not_of(' ') != std::string::npos) {
      return InvalidArgument("bad shape '" + text + "'");
    }
    shape.push_back(v);
  }
  return shape;
}

// Splits the file into its header text and data; checks magic and version.
Status SplitHeader(std::string_view bytes, std::string_view* header, std::string_view* data) {
  if (bytes.size() < 10 || bytes.substr(0, 6) != kMagic) {
    return InvalidArgument("not a .npy file (no \\x93NUMPY magic); save arrays with numpy.save");
  }
  int major = static_cast<unsigned char>(bytes[6]);
  if (major < 1 || major > 3) {
    return InvalidArgument("unsupported .npy format version " + std::to_string(major));
  }
  auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])); };
  size_t prefix = major == 1 ? 10 : 12;
  if (bytes.size() < prefix) return InvalidArgument("truncated .npy header");
  uint32_t len = byte(8) | byte(9) << 8;
  if (major > 1) len |= byte(10) << 16 | byte(11) << 24;
  if (bytes.size() - prefix < len) return InvalidArgument("truncated .npy header");
  *header = bytes.substr(prefix, len);
  *data = bytes.substr(prefix + len);
  return Status::Ok();
}

Status FillFromHeader(const std::map<std::string, std::string>& h, NpyArray* a) {
  for (const char* key : {"descr", "fortran_order", "shape"}) {
    if (!h.count(key)) return InvalidArgument(std::string("header lacks '") + key + "'");
  }
  YARD_ASSIGN_OR_RETURN(a->dtype, ParseDescr(h.at("descr")));
  if (h.at("fortran_order") != "False") {
    return InvalidArgument(
        "Fortran-ordered arrays are not supported; save np.ascontiguousarray(x)");
  }
  YARD_ASSIGN_OR_RETURN(a->shape, ParseShape(h.at("shape")));
  if (a->shape.empty()) return InvalidArgument("a 0-dimensional array holds no samples");
  // Whatever the shape, its size in bytes must be a number: a product that
  // wrapped could match a short file and describe rows that are not there
  // (found by fuzz/npy_fuzzer.cc).
  uint64_t bytes = NpyItemSize(a->dtype);
  for (int64_t d : a->shape) {
    if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes) ||
        bytes > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return InvalidArgument("shape " + h.at("shape") + " is too large for any file");
  }
  return Status::Ok();
}

}  // namespace

NpyData::NpyData(NpyData&& other) noexcept { *this = std::move(other); }

NpyData& NpyData::operator=(NpyData&& other) noexcept {
  if (this == &other) return *this;
  Unmap();
  owned_ = std::move(other.owned_);
  other.owned_.clear();
  map_ = std::exchange(other.map_, nullptr);
  map_length_ = std::exchange(other.map_length_, 0);
  map_data_ = std::exchange(other.map_data_, nullptr);
  map_size_ = std::exchange(other.map_size_, 0);
  return *this;
}

NpyData::~NpyData() { Unmap(); }

void NpyData::Unmap() {
  if (map_) ::munmap(map_, map_length_);
  map_ = nullptr;
  map_length_ = map_size_ = 0;
  map_data_ = nullptr;
}

void NpyData::resize(size_t n) {
  Unmap();
  owned_.resize(n);
}

StatusOr<NpyData> NpyData::Map(int fd, uint64_t offset, size_t size) {
  NpyData d;
  if (size == 0) return d;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t start = offset / page * page;
  const size_t length = size + static_cast<size_t>(offset - start);
  // Private and writable: a write (none is expected) copies the page for
  // this process alone. Not MAP_POPULATE: on a writable private map it
  // would copy every page; the read-ahead hint fills the page cache
  // instead and reads map its pages as they are.
  void* map =
      ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, static_cast<off_t>(start));
  if (map == MAP_FAILED)
    return InvalidArgument(std::string("cannot map the data: ") + std::strerror(errno) +
                           " (address space or memory limits too small for the file?)");
  ::madvise(map, length, MADV_WILLNEED);
  d.map_ = map;
  d.map_length_ = length;
  d.map_data_ = static_cast<char*>(map) + (offset - start);
  d.map_size_ = size;
  return d;
}

const char* NpyDTypeName(NpyDType t) {
  switch (t) {
    case NpyDType::kFloat32:
      return "float32";
    case NpyDType::kFloat64:
      return "float64";
    case NpyDType::kInt32:
      return "int32";
    case NpyDType::kInt64:
      return "int64";
  }
  return "?";
}

size_t NpyItemSize(NpyDType t) { return t == NpyDType::kFloat32 || t == NpyDType::kInt32 ? 4 : 8; }

int64_t NpyArray::elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

// Parses the header at the start of `bytes` into `a` (dtype, shape) and sets
// `data_offset` to where the data starts. `bytes` may hold only the file's
// beginning, as long as the whole header is in it.
Status ParseHeader(std::string_view bytes, NpyArray* a, size_t* data_offset) {
  std::string_view header, data;
  YARD_RETURN_IF_ERROR(SplitHeader(bytes, &header, &data));
  auto dict = HeaderParser(header).Parse();
  if (!dict.ok()) return dict.status();
  YARD_RETURN_IF_ERROR(FillFromHeader(*dict, a));
  *data_offset = static_cast<size_t>(data.data() - bytes.data());
  return Status::Ok();
}

Status CheckDataSize(const NpyArray& a, uint64_t have) {
  uint64_t want = static_cast<uint64_t>(a.elements()) * NpyItemSize(a.dtype);
  if (have == want) return Status::Ok();
  return InvalidArgument("data holds " + std::to_string(have) + " bytes but shape and dtype need " +
                         std::to_string(want) + " (truncated or not written by numpy.save)");
}

// Reads exactly `n` bytes at `offset` of `fd` into `out`.
Status ReadExactly(int fd, uint64_t offset, char* out, size_t n) {
  while (n > 0) {
    ssize_t got = ::pread(fd, out, n, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0)
      return InvalidArgument(std::string("read failed: ") +
                             (got < 0 ? std::strerror(errno) : "file shrank"));
    out += got;
    offset += static_cast<uint64_t>(got);
    n -= static_cast<size_t>(got);
  }
  return Status::Ok();
}

// .npy headers are a few hundred bytes; this much of a file's start is
// read to find it.
constexpr size_t kHeaderWindow = 1 << 20;

}  // namespace

StatusOr<NpyArray> ParseNpy(std::string_view bytes, const std::string& name) {
  NpyArray a;
  size_t offset = 0;
  Status s = ParseHeader(bytes, &a, &offset);
  if (s.ok()) s = CheckDataSize(a, bytes.size() - offset);
  if (!s.ok()) return s.WithContext(name);
  a.data.resize(bytes.size() - offset);
  if (!a.data.empty()) std::memcpy(a.data.data(), bytes.data() + offset, a.data.size());
  return a;
}

// Reads the header, then maps the data: a file of gigabytes is neither
// copied nor zero-filled first, its pages are the page cache's.
StatusOr<NpyArray> ReadNpy(const std::string& path) {
  ScopedFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  int fd = file.get();
  if (fd < 0 && errno == ENOENT) return NotFound(path + ": no such file");
  if (fd < 0) return InvalidArgument(path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  NpyArray a;
  Status s = ::fstat(fd, &st) == 0 ? Status::Ok()
                                   : InvalidArgument(std::string("stat: ") + std::strerror(errno));
  uint64_t size = s.ok() ? static_cast<uint64_t>(st.st_size) : 0;
  std::string window(std::min<uint64_t>(size, kHeaderWindow), '\0');
  if (s.ok()) s = ReadExactly(fd, 0, window.data(), window.size());
  size_t offset = 0;
  if (s.ok()) s = ParseHeader(window, &a, &offset);
  if (s.ok()) s = CheckDataSize(a, size - offset);
  if (s.ok()) {
    StatusOr<NpyData> mapped = NpyData::Map(fd, offset, size - offset);
    if (mapped.ok())
      a.data = std::move(*mapped);
    else
      s = mapped.status();
  }
  if (!s.ok()) return s.WithContext(path);
  return a;
}

std::string EncodeNpy(const NpyArray& a) {
  std::string out = NpyHeader(a);
  out.append(a.data.data(), a.data.size());
  return out;
}

std::string NpyHeader(const NpyArray& a) {
  static const char* kDescr[] = {"<f4", "<f8", "<i4", "<i8"};
  std::string shape = "(";
  for (int64_t d : a.shape) shape += std::to_string(d) + ", ";
  if (a.shape.size() > 1) shape.resize(shape.size() - 2);
  if (a.shape.size() == 1) shape.pop_back();
  shape += ")";
  std::string header = std::string("{'descr': '") + kDescr[static_cast<int>(a.dtype)] +
                       "', 'fortran_order': False, 'shape': " + shape + ", }";
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string out(kMagic);
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  return out;
}

}  // namespace yard::trainer
