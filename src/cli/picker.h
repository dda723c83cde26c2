// The interactive machine picker shown by `yard fit`/`submit` on a terminal
// when no --machines are given.
#pragma once

#include <string>
#include <vector>

#include "client/http_client.h"

namespace yard::cli {

// Lists the machine types (resources, prices, availability) on stderr with
// the server's default preselected, and reads the user's choice from stdin:
// numbers or names, comma-separated, in order of preference; empty = the
// default.
StatusOr<std::vector<std::string>> PickMachines(const HttpClient& client);

}  // namespace yard::cli
