#include "common/frames.h"

namespace yard {

void AppendFrameHeader(char tag, size_t size, std::string* out) {
  char h[kFrameHeaderBytes] = {
      tag, static_cast<char>(size & 0xff), static_cast<char>((size >> 8) & 0xff),
      static_cast<char>((size >> 16) & 0xff), static_cast<char>((size >> 24) & 0xff)};
  out->append(h, sizeof h);
}

void AppendFrame(char tag, std::string_view payload, std::string* out) {
  AppendFrameHeader(tag, payload.size(), out);
  out->append(payload);
}

std::optional<Frame> NextFrame(std::string_view* in, bool* corrupt) {
  *corrupt = false;
  if (in->size() < kFrameHeaderBytes) return std::nullopt;
  auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>((*in)[i])); };
  size_t size = byte(1) | byte(2) << 8 | byte(3) << 16 | byte(4) << 24;
  if (size > kMaxFramePayload) {
    *corrupt = true;
    return std::nullopt;
  }
  if (in->size() < kFrameHeaderBytes + size) return std::nullopt;
  Frame f{(*in)[0], in->substr(kFrameHeaderBytes, size)};
  in->remove_prefix(kFrameHeaderBytes + size);
  return f;
}

void FrameReader::Feed(std::string_view bytes) {
  // Compact only between frames: payloads handed out stay valid until here.
  if (start_ > 0) {
    buf_.erase(0, start_);
    start_ = 0;
  }
  buf_.append(bytes);
}

std::optional<Frame> FrameReader::Next() {
  std::string_view rest = std::string_view(buf_).substr(start_);
  size_t before = rest.size();
  std::optional<Frame> f = NextFrame(&rest, &corrupt_);
  if (f) start_ += before - rest.size();
  return f;
}

}  // namespace yard
