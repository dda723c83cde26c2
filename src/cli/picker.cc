#include "cli/picker.h"

#include <cstdio>
#include <iostream>

#include "client/machine_menu.h"
#include "client/reply.h"

namespace yard::cli {
namespace {

// The answer's machine types, each with the fields the menu shows of the
// types it reads (client/machine_menu.h): a name, and numbers and a flag
// where present.
StatusOr<Json> MenuTypes(const Reply& reply) {
  YARD_ASSIGN_OR_RETURN(Reply types, reply.Field("types"));
  YARD_ASSIGN_OR_RETURN(std::vector<Reply> listed, types.Elements());
  for (const Reply& t : listed) {
    YARD_RETURN_IF_ERROR(t.Get<std::string>("name").status());
    YARD_RETURN_IF_ERROR(t.GetOr<std::string>("gpu_model", "").status());
    for (const char* number : {"cpus", "gpus", "spot_price", "on_demand_price", "available"})
      YARD_RETURN_IF_ERROR(t.GetOr<double>(number, 0).status());
    YARD_RETURN_IF_ERROR(t.GetOr<bool>("default", false).status());
  }
  return types.json();
}

}  // namespace

StatusOr<std::vector<std::string>> PickMachines(const HttpClient& client) {
  YARD_ASSIGN_OR_RETURN(Reply reply, GetReply(client, "/v1/machines"));
  YARD_ASSIGN_OR_RETURN(const Json types, MenuTypes(reply));
  std::fprintf(stderr, "%s%s", MachineMenu(types).c_str(), MachinePrompt(types).c_str());
  std::string line;
  std::getline(std::cin, line);
  return ParseMachineChoice(types, line);
}

}  // namespace yard::cli
