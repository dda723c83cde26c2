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

std::vector<std::string_view> OutputSplitter::Split(std::string_view data, bool eof) {
  std::string_view all = data;
  if (!carry_.empty()) {
    joined_ = std::move(carry_);
    joined_.append(data);
    all = joined_;
  }
  size_t ready = eof ? all.size() : all.size() - IncompleteUtf8Tail(all);
  std::vector<std::string_view> pieces;
  std::string_view rest = all.substr(0, ready);
  while (!rest.empty()) {
    size_t n = CutAtCharacter(rest, kMaxPiece);
    pieces.push_back(rest.substr(0, n));
    rest.remove_prefix(n);
  }
  carry_.assign(all.substr(ready));  // at most 3 bytes
  return pieces;
}

std::vector<std::string> OutputSplitter::Add(std::string_view data, bool eof) {
  std::vector<std::string> out;
  for (std::string_view p : Split(data, eof)) out.emplace_back(p);
  return out;
}

}  // namespace yard
