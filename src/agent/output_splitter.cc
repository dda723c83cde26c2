#include "agent/output_splitter.h"

#include <algorithm>

namespace yard {

namespace {

bool IsContinuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Bytes of the character that `lead` starts; 1 for bytes that cannot start one.
size_t SequenceLength(unsigned char lead) {
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

// Largest n <= max such that s[0, n) does not end inside a character.
size_t CutAtCharacter(std::string_view s, size_t max) {
  if (max >= s.size()) return s.size();
  size_t n = max;
  while (n > 0 && max - n < 3 && IsContinuation(s[n])) --n;
  return n > 0 ? n : max;  // not UTF-8 at all: cut anywhere
}

}  // namespace

size_t IncompleteUtf8Tail(std::string_view s) {
  size_t n = s.size();
  for (size_t back = 1; back <= std::min<size_t>(3, n); ++back) {
    auto c = static_cast<unsigned char>(s[n - back]);
    if (IsContinuation(c)) continue;
    return SequenceLength(c) > back ? back : 0;
  }
  return 0;
}

std::vector<std::string> OutputSplitter::Add(std::string_view data, bool eof) {
  std::string buf = std::move(carry_);
  buf.append(data);
  carry_.clear();
  size_t ready = eof ? buf.size() : buf.size() - IncompleteUtf8Tail(buf);
  std::vector<std::string> pieces;
  std::string_view rest(buf.data(), ready);
  while (!rest.empty()) {
    size_t n = CutAtCharacter(rest, kMaxPiece);
    pieces.emplace_back(rest.substr(0, n));
    rest.remove_prefix(n);
  }
  carry_ = buf.substr(ready);
  return pieces;
}

}  // namespace yard
