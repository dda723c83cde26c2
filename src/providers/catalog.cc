#include "providers/catalog.h"

#include <algorithm>
#include <limits>

namespace yard {

using Json = nlohmann::json;

Json MachineType::ToJson() const {
  return {{"name", name},
          {"provider", provider},
          {"cpus", cpus},
          {"memory_gb", memory_gb},
          {"gpus", gpus},
          {"gpu_model", gpu_model},
          {"spot_price", spot_price},
          {"on_demand_price", on_demand_price},
          {"default_market", default_market},
          {"options", options}};
}

MachineType MachineType::WithSettings(const Json& settings) const {
  MachineType t = *this;
  if (!t.options.is_object()) t.options = Json::object();
  for (const auto& [k, v] : settings.items()) t.options[k] = v;
  return t;
}

Catalog Catalog::BuiltinLocal(int cores, int gpus) {
  Catalog c;
  MachineType whole{"local", "local", cores, 0, gpus, gpus ? "local GPU" : "", 0, 0, "on-demand"};
  c.types_.push_back(whole);
  for (int n = 1; n < cores; n *= 2) {
    MachineType slice{
        "local-" + std::to_string(n) + "cpu", "local", n, 0, 0, "", 0, 0, "on-demand"};
    c.types_.push_back(slice);
  }
  return c;
}

namespace {

// The integer `key` of `t`, or `fallback` when absent. InvalidArgument for
// anything but a whole number that an int holds: a cast of 1e300 would be
// undefined.
StatusOr<int> IntValue(const Json& t, const char* key, int fallback) {
  auto it = t.find(key);
  if (it == t.end()) return fallback;
  if (!it->is_number_integer() || *it < std::numeric_limits<int>::min() ||
      *it > std::numeric_limits<int>::max())
    return InvalidArgument(std::string("'") + key + "' must be a whole number");
  return it->get<int>();
}

StatusOr<MachineType> TypeFromJson(const Json& t) {
  MachineType m;
  m.name = t.at("name").get<std::string>();
  m.provider = t.at("provider").get<std::string>();
  YARD_ASSIGN_OR_RETURN(m.cpus, IntValue(t, "cpus", 1));
  m.memory_gb = t.value("memory_gb", 0.0);
  YARD_ASSIGN_OR_RETURN(m.gpus, IntValue(t, "gpus", 0));
  m.gpu_model = t.value("gpu_model", "");
  m.spot_price = t.value("spot_price", 0.0);
  m.on_demand_price = t.value("on_demand_price", 0.0);
  m.default_market = t.value("default_market", "on-demand");
  m.options = t.value("options", Json::object());
  if (m.default_market != "spot" && m.default_market != "on-demand")
    return InvalidArgument("default_market must be spot or on-demand");
  return m;
}

}  // namespace

StatusOr<Catalog> Catalog::FromJson(const Json& j) {
  // A "version" that is not a number must not reach value<int>, which throws.
  if (!j.is_object() || !j.contains("version") || j["version"] != 1 || !j.contains("types") ||
      !j["types"].is_array())
    return InvalidArgument("catalog: expected {\"version\": 1, \"types\": [...]}");
  Catalog c;
  try {
    for (const Json& t : j["types"]) {
      StatusOr<MachineType> m = TypeFromJson(t);
      if (!m.ok())
        return InvalidArgument("catalog: type " + t.value("name", Json()).dump() + ": " +
                               m.status().message());
      c.types_.push_back(std::move(*m));
    }
  } catch (const Json::exception& e) {
    return InvalidArgument(std::string("catalog: ") + e.what());
  }
  return c;
}

void Catalog::Merge(const Catalog& other) {
  for (const auto& t : other.types_) {
    auto it = std::find_if(types_.begin(), types_.end(),
                           [&](const MachineType& m) { return m.name == t.name; });
    if (it != types_.end())
      *it = t;
    else
      types_.push_back(t);
  }
}

const MachineType* Catalog::Find(const std::string& name) const {
  for (const auto& t : types_)
    if (t.name == name) return &t;
  return nullptr;
}

std::string Catalog::NamesForHelp() const {
  std::string out;
  for (const auto& t : types_) out += (out.empty() ? "" : ", ") + t.name;
  return out;
}

Json Catalog::ToJson() const {
  Json types = Json::array();
  for (const auto& t : types_) types.push_back(t.ToJson());
  return {{"version", 1}, {"types", types}};
}

StatusOr<MachineRequest> ParseMachineRequest(const std::string& id) {
  MachineRequest r;
  size_t colon = id.find(':');
  r.type = id.substr(0, colon);
  if (colon != std::string::npos) r.market = id.substr(colon + 1);
  if (r.type.empty()) return InvalidArgument("empty machine id in '" + id + "'");
  if (!r.market.empty() && r.market != "spot" && r.market != "on-demand")
    return InvalidArgument("machine id '" + id +
                           "': the market after ':' must be 'spot' or 'on-demand'");
  return r;
}

}  // namespace yard
