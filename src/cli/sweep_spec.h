// The --sweep flags of `yard fit`/`yard submit`: NAME=V1,V2,... each, one
// job per combination of the values.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace yard::cli {

struct SweepAxis {
  std::string name;                 // passed to the script as --NAME
  std::vector<std::string> values;  // in the order given, each once
};

// Refuses (naming the flag and what to write instead) a flag without '=',
// an empty name or a name that is not a plain option name, an empty value
// (`lr=,,`, `lr=1,,2`), a value given twice, and a name swept twice: each
// would otherwise submit no job, a job the user did not mean, or the same
// job twice.
StatusOr<std::vector<SweepAxis>> ParseSweeps(const std::vector<std::string>& flags);

}  // namespace yard::cli
