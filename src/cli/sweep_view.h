// Following the jobs of a sweep together: a table of their states and
// latest metrics, redrawn in place on a terminal, printed on change
// elsewhere.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "client/http_client.h"

namespace yard::cli {

// Follows every job to its end. Returns 0 if all succeeded, else 1.
int FollowSweep(const HttpClient& client,
                const std::vector<std::pair<std::string, std::string>>& jobs);

}  // namespace yard::cli
