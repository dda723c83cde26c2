// Following the jobs of a sweep together: a table of their states and
// latest metrics, redrawn in place on a terminal, printed on change
// elsewhere.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "client/http_client.h"

namespace yard::cli {

// Follows every job (id, description) to its end, mirroring its artifact
// dirs ("checkpoints", "logs", "outputs") that `dirs` maps to a local folder
// into a sub-folder per job named after its description. The table's
// metrics are the job's metric events, else the epoch lines Keras and
// PyTorch Lightning print (OutputMetrics). Returns 0 if all succeeded, else 1.
int FollowSweep(const HttpClient& client,
                const std::vector<std::pair<std::string, std::string>>& jobs,
                const std::map<std::string, std::string>& dirs = {});

}  // namespace yard::cli
