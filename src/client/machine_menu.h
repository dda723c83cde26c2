// The machine picker's words, shared by `yard fit`/`submit` (cli/picker.cc)
// and the Python SDK's online_fit (through the binding): which machine types
// it lists and how it reads the answer. The caller does the asking, since a
// terminal and a Jupyter kernel read input differently.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"

namespace yard {

using Json = nlohmann::json;

// What to show: "Choose machines, in order of preference:" and a line per
// type of GET /v1/machines' "types" (resources, prices, availability, the
// server's default marked), each ending in '\n'.
std::string MachineMenu(const Json& types);

// The index of the server's default type (0 when none is marked).
size_t DefaultMachine(const Json& types);

// The prompt: "Numbers or names, comma-separated [N]: " (N the default's).
std::string MachinePrompt(const Json& types);

// The answer as machine ids, in order: numbers are 1-based positions in
// `types`, anything else is a name (possibly with :spot / :on-demand); an
// empty answer is the default type (none when `types` is empty).
// kInvalidArgument "no machine number 7 (1-2)" for a number out of range.
StatusOr<std::vector<std::string>> ParseMachineChoice(const Json& types, const std::string& answer);

}  // namespace yard
