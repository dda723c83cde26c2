#include "cli/picker.h"

#include <cstdio>
#include <iostream>

#include "client/machine_menu.h"

namespace yard::cli {

StatusOr<std::vector<std::string>> PickMachines(const HttpClient& client) {
  YARD_ASSIGN_OR_RETURN(Json reply, client.Get("/v1/machines"));
  const Json types = reply.value("types", Json::array());
  std::fprintf(stderr, "%s%s", MachineMenu(types).c_str(), MachinePrompt(types).c_str());
  std::string line;
  std::getline(std::cin, line);
  return ParseMachineChoice(types, line);
}

}  // namespace yard::cli
