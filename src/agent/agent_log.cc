#include "agent/agent_log.h"

#include <cstdio>

namespace yard {

void AgentLog(const std::string& message) {
  std::fprintf(stderr, "yard agent: %s\n", message.c_str());
}

}  // namespace yard
