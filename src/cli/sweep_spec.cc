#include "cli/sweep_spec.h"

#include <set>

namespace yard::cli {
namespace {

bool IsOptionName(const std::string& name) {
  if (name.empty() || name[0] == '-') return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
      return false;
  return true;
}

StatusOr<SweepAxis> ParseSweep(const std::string& flag) {
  const std::string usage = " (write --sweep NAME=V1,V2,..., e.g. --sweep lr=0.1,0.01)";
  size_t eq = flag.find('=');
  if (eq == std::string::npos) return InvalidArgument("--sweep '" + flag + "' has no '='" + usage);
  SweepAxis axis{flag.substr(0, eq), {}};
  if (!IsOptionName(axis.name))
    return InvalidArgument("--sweep '" + flag + "': '" + axis.name +
                           "' is not an option name (letters, digits, '-', '_', '.')" + usage);
  std::string list = flag.substr(eq + 1);
  std::set<std::string> seen;
  size_t start = 0;
  for (int n = 1;; ++n) {
    size_t comma = list.find(',', start);
    std::string value =
        list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (value.empty())
      return InvalidArgument("--sweep '" + flag + "': value " + std::to_string(n) + " of '" +
                             axis.name + "' is empty" + usage);
    if (!seen.insert(value).second)
      return InvalidArgument("--sweep '" + flag + "': '" + value + "' is given twice for '" +
                             axis.name + "' (it would run the same job twice)");
    axis.values.push_back(value);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return axis;
}

}  // namespace

StatusOr<std::vector<SweepAxis>> ParseSweeps(const std::vector<std::string>& flags) {
  std::vector<SweepAxis> axes;
  std::set<std::string> names;
  for (const std::string& flag : flags) {
    YARD_ASSIGN_OR_RETURN(SweepAxis axis, ParseSweep(flag));
    if (!names.insert(axis.name).second)
      return InvalidArgument("--sweep '" + axis.name +
                             "' is given twice: put all its values in one flag (--sweep " +
                             axis.name + "=V1,V2,...)");
    axes.push_back(std::move(axis));
  }
  return axes;
}

}  // namespace yard::cli
