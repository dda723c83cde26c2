// Diagnostics of the agent: one line on stderr per event worth a human's
// attention (the agent has no terminal; its provider captures stderr).
#pragma once

#include <string>

namespace yard {

void AgentLog(const std::string& message);

}  // namespace yard
