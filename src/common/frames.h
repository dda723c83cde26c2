// Record frames: the binary framing that carries a job's records and events
// without re-encoding output bytes (docs/formats.md, "Record frames").
//
//   frame := tag (1 byte) · length (4 bytes, little-endian) · payload
//
// The tags in use: 'j' a JSON object as text; 'o' output bytes exactly as
// the job wrote them (what the payload holds around them depends on the
// stream: see the users of these functions); 'k' keep-alive, empty; 'e'
// the clean end of an event stream delimited by its connection, empty.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace yard {

namespace frame_tag {
inline constexpr char kJson = 'j';
inline constexpr char kOutput = 'o';
inline constexpr char kKeepAlive = 'k';
inline constexpr char kEnd = 'e';
}  // namespace frame_tag

// Content-Type of a framed body or stream.
inline constexpr const char* kFramesContentType = "application/x-yard-frames";
// Content-Type of a framed event stream that ends with its connection and
// whose clean end is an 'e' frame (GET /v1/jobs/{id}/events?end=e).
inline constexpr const char* kFramesToCloseContentType = "application/x-yard-frames; end=e";

// Bytes a frame adds to its payload.
inline constexpr size_t kFrameHeaderBytes = 5;
// A payload longer than this is refused as corrupt.
inline constexpr size_t kMaxFramePayload = 64u << 20;

struct Frame {
  char tag = 0;
  std::string_view payload;  // points into the buffer that was parsed
};

// Appends one frame to `out`.
void AppendFrame(char tag, std::string_view payload, std::string* out);
// Appends the header of a frame whose `size` payload bytes the caller
// appends next (in pieces, say).
void AppendFrameHeader(char tag, size_t size, std::string* out);

// Reads the frame at the front of `*in` and removes it from `*in`. nullopt
// when `*in` does not hold a whole frame yet (also when it is empty); then
// `*corrupt` says whether it never can (a length above kMaxFramePayload).
std::optional<Frame> NextFrame(std::string_view* in, bool* corrupt);

// Incremental reader of a framed byte stream arriving in pieces. Not
// thread-safe.
class FrameReader {
 public:
  // Adds bytes; then call Next() until it returns nullopt.
  void Feed(std::string_view bytes);
  // The next whole frame; its payload stays valid until the next Feed().
  std::optional<Frame> Next();
  // True when the stream holds a frame that can never be valid.
  bool corrupt() const { return corrupt_; }
  // Bytes received but not yet returned as frames.
  size_t pending() const { return buf_.size() - start_; }

 private:
  std::string buf_;
  size_t start_ = 0;
  bool corrupt_ = false;
};

}  // namespace yard
