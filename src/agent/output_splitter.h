// OutputSplitter: cuts a job's output stream into the `data` of output
// records.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace yard {

// Pieces are at most kMaxPiece bytes and never end inside a UTF-8 character
// (JSON text must be valid UTF-8). Nothing is held back waiting for a line
// end: only the first bytes of a character whose rest has not arrived yet.
// Not thread-safe.
class OutputSplitter {
 public:
  static constexpr size_t kMaxPiece = 64 * 1024;

  // Takes the next bytes of output; returns the pieces ready to send. With
  // `eof`, returns everything, incomplete characters included.
  std::vector<std::string> Add(std::string_view data, bool eof);
  // The same pieces without copies: views into `data` or into the
  // splitter, valid while `data` is and until the next call.
  std::vector<std::string_view> Split(std::string_view data, bool eof);

 private:
  std::string carry_;
  std::string joined_;  // carry_ + data, when a character was split
};

// Length of the trailing bytes of `s` that start a UTF-8 character but do
// not complete it (0..3).
size_t IncompleteUtf8Tail(std::string_view s);

}  // namespace yard
