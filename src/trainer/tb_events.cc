#include "trainer/tb_events.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>

namespace yard::trainer {
namespace {

constexpr std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrcTable = MakeCrcTable();

// Protobuf wire format: tag = field << 3 | wire type.
enum WireType { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void PutVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}
void PutTag(int field, WireType type, std::string* out) { PutVarint(field << 3 | type, out); }
void PutFixed(uint64_t v, int bytes, std::string* out) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
void PutBytes(int field, std::string_view bytes, std::string* out) {
  PutTag(field, kLengthDelimited, out);
  PutVarint(bytes.size(), out);
  out->append(bytes);
}

// Event.wall_time = 1 (double), Event.step = 2 (int64).
std::string EventHeader(double wall_time, int64_t step) {
  std::string e;
  uint64_t bits;
  std::memcpy(&bits, &wall_time, sizeof bits);
  PutTag(1, kFixed64, &e);
  PutFixed(bits, 8, &e);
  if (step != 0) {
    PutTag(2, kVarint, &e);
    PutVarint(static_cast<uint64_t>(step), &e);
  }
  return e;
}

// Summary.Value: tag = 1 (string), simple_value = 2 (float).
std::string EncodeValue(const std::string& tag, float value) {
  std::string v;
  PutBytes(1, tag, &v);
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  PutTag(2, kFixed32, &v);
  PutFixed(bits, 4, &v);
  return v;
}

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

}  // namespace

uint32_t Crc32c(std::string_view data) {
  uint32_t c = 0xffffffffu;
  for (unsigned char b : data) c = kCrcTable[(c ^ b) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

uint32_t MaskedCrc32c(std::string_view data) {
  uint32_t c = Crc32c(data);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string FrameRecord(std::string_view data) {
  std::string len;
  PutFixed(data.size(), 8, &len);
  std::string out = len;
  PutFixed(MaskedCrc32c(len), 4, &out);
  out.append(data);
  PutFixed(MaskedCrc32c(data), 4, &out);
  return out;
}

std::string EncodeFileVersionEvent(double wall_time) {
  std::string e = EventHeader(wall_time, 0);
  PutBytes(3, "brain.Event:2", &e);  // Event.file_version
  return e;
}

std::string EncodeScalarsEvent(double wall_time, int64_t step,
                               const std::vector<std::pair<std::string, float>>& scalars) {
  std::string summary;
  for (const auto& [tag, value] : scalars) PutBytes(1, EncodeValue(tag, value), &summary);
  std::string e = EventHeader(wall_time, step);
  PutBytes(5, summary, &e);  // Event.summary
  return e;
}

EventFileWriter::~EventFileWriter() { std::fclose(file_); }

StatusOr<std::unique_ptr<EventFileWriter>> EventFileWriter::Open(const std::string& dir,
                                                                 double wall_time) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Internal("creating " + dir + ": " + ec.message());
  std::string base = dir + "/events.out.tfevents." +
                     std::to_string(static_cast<int64_t>(std::floor(wall_time))) + "." + HostName();
  std::string path = base;
  std::FILE* f = nullptr;
  for (int n = 1; !(f = std::fopen(path.c_str(), "wbx")); ++n) {
    if (errno != EEXIST || n > 1000) return ErrnoStatus("creating " + path);
    path = base + "." + std::to_string(n);
  }
  std::unique_ptr<EventFileWriter> w(new EventFileWriter(f, path));
  YARD_RETURN_IF_ERROR(w->Write(EncodeFileVersionEvent(wall_time)));
  return w;
}

Status EventFileWriter::WriteScalars(double wall_time, int64_t step,
                                     const std::vector<std::pair<std::string, float>>& scalars) {
  return Write(EncodeScalarsEvent(wall_time, step, scalars));
}

Status EventFileWriter::Write(std::string_view event) {
  std::string record = FrameRecord(event);
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size() ||
      std::fflush(file_) != 0) {
    return ErrnoStatus("writing " + path_);
  }
  return Status::Ok();
}

}  // namespace yard::trainer
