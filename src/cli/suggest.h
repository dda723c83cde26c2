// Suggestions for mistyped names: commands, flags, states, machine types.
#pragma once

#include <string>
#include <vector>

namespace yard::cli {

// Edit distance (insertions, deletions, substitutions and swaps of two
// neighbours; case-sensitive).
size_t EditDistance(const std::string& a, const std::string& b);

// The candidate nearest to `word` when it is close enough to be a likely
// typo (distance at most max(1, |word| / 3); ties: the first listed), else "".
std::string Nearest(const std::string& word, const std::vector<std::string>& candidates);

// "; did you mean 'fit'?" for a near miss, else "".
std::string DidYouMean(const std::string& word, const std::vector<std::string>& candidates);

// "a, b, c"
std::string JoinNames(const std::vector<std::string>& names);

}  // namespace yard::cli
