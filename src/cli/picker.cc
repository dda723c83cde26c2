#include "cli/picker.h"

#include <cstdio>
#include <iostream>
#include <sstream>

namespace yard::cli {

StatusOr<std::vector<std::string>> PickMachines(const HttpClient& client) {
  YARD_ASSIGN_OR_RETURN(Json reply, client.Get("/v1/machines"));
  const Json& types = reply["types"];
  size_t def = 0;
  std::fprintf(stderr, "Choose machines, in order of preference:\n");
  for (size_t i = 0; i < types.size(); ++i) {
    const Json& t = types[i];
    if (t.value("default", false)) def = i;
    std::fprintf(stderr, "  %2zu) %-18s %3d cpus %2d gpus %-10s spot $%.3f/h  on-demand $%.3f/h  %d available%s\n",
                 i + 1, t.value("name", "").c_str(), t.value("cpus", 0), t.value("gpus", 0),
                 t.value("gpu_model", "").c_str(), t.value("spot_price", 0.0),
                 t.value("on_demand_price", 0.0), t.value("available", 0),
                 t.value("default", false) ? "  (default)" : "");
  }
  std::fprintf(stderr, "Numbers or names, comma-separated [%zu]: ", def + 1);
  std::string line;
  std::getline(std::cin, line);
  std::vector<std::string> out;
  std::stringstream ss(line);
  for (std::string item; std::getline(ss, item, ',');) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.empty()) continue;
    char* end = nullptr;
    long n = std::strtol(item.c_str(), &end, 10);
    if (*end == '\0') {
      if (n < 1 || static_cast<size_t>(n) > types.size())
        return InvalidArgument("no machine number " + item + " (1-" + std::to_string(types.size()) + ")");
      out.push_back(types[n - 1]["name"]);
    } else {
      out.push_back(item);  // a name, possibly with :spot / :on-demand
    }
  }
  if (out.empty() && !types.empty()) out.push_back(types[def]["name"]);
  return out;
}

}  // namespace yard::cli
