#include "client/machine_menu.h"

#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace yard {
namespace {

std::string MenuLine(size_t i, const Json& t) {
  char line[512];
  std::snprintf(line, sizeof line,
                "  %2zu) %-18s %3d cpus %2d gpus %-10s spot $%.3f/h  on-demand $%.3f/h  %d "
                "available%s\n",
                i + 1, t.value("name", "").c_str(), t.value("cpus", 0), t.value("gpus", 0),
                t.value("gpu_model", "").c_str(), t.value("spot_price", 0.0),
                t.value("on_demand_price", 0.0), t.value("available", 0),
                t.value("default", false) ? "  (default)" : "");
  return line;
}

std::string Trim(std::string s) {
  s.erase(0, s.find_first_not_of(" \t\r\n"));
  s.erase(s.find_last_not_of(" \t\r\n") + 1);
  return s;
}

}  // namespace

std::string MachineMenu(const Json& types) {
  std::string out = "Choose machines, in order of preference:\n";
  for (size_t i = 0; i < types.size(); ++i) out += MenuLine(i, types[i]);
  return out;
}

size_t DefaultMachine(const Json& types) {
  for (size_t i = 0; i < types.size(); ++i)
    if (types[i].value("default", false)) return i;
  return 0;
}

std::string MachinePrompt(const Json& types) {
  return "Numbers or names, comma-separated [" + std::to_string(DefaultMachine(types) + 1) + "]: ";
}

StatusOr<std::vector<std::string>> ParseMachineChoice(const Json& types,
                                                      const std::string& answer) {
  std::vector<std::string> out;
  std::stringstream ss(answer);
  for (std::string item; std::getline(ss, item, ',');) {
    item = Trim(item);
    if (item.empty()) continue;
    char* end = nullptr;
    long n = std::strtol(item.c_str(), &end, 10);
    if (*end != '\0') {
      out.push_back(item);  // a name, possibly with :spot / :on-demand
    } else if (n < 1 || static_cast<size_t>(n) > types.size()) {
      return InvalidArgument("no machine number " + item + " (1-" + std::to_string(types.size()) +
                             "): answer with the numbers listed or machine names");
    } else {
      out.push_back(types[n - 1].value("name", ""));
    }
  }
  if (out.empty() && !types.empty()) out.push_back(types[DefaultMachine(types)].value("name", ""));
  return out;
}

}  // namespace yard
