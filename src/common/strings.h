// Small string helpers shared across concerns.
#pragma once

#include <string>
#include <vector>

namespace yard {

// The non-empty parts of `s` between `sep`s, in order: "a,,b," -> {a, b};
// SplitNonEmpty(text, '\n') gives the non-empty lines.
std::vector<std::string> SplitNonEmpty(const std::string& s, char sep);

}  // namespace yard
