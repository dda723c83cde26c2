#include "server/provider_set.h"

#include "common/files.h"
#include "providers/local_provider.h"
#include "providers/sim_provider.h"

namespace yard {

using Json = nlohmann::json;

std::map<std::string, Provider*> ProviderSet::Pointers() const {
  std::map<std::string, Provider*> out;
  for (const auto& [name, p] : owned) out[name] = p.get();
  return out;
}

namespace {

StatusOr<Json> ReadJsonFile(const std::string& path, const std::string& what) {
  YARD_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  Json j = Json::parse(text, nullptr, false);
  if (j.is_discarded()) return InvalidArgument(what + " " + path + " is not valid JSON");
  return j;
}

StatusOr<std::unique_ptr<Provider>> MakeSim(const Json& settings, const std::string& home,
                                            const Clock* clock, AgentSpawner* spawner) {
  Json scenario = settings.value("scenario", Json());
  if (settings.contains("scenario_file")) {
    YARD_ASSIGN_OR_RETURN(scenario, ReadJsonFile(settings["scenario_file"], "sim scenario"));
  }
  YARD_ASSIGN_OR_RETURN(SimScenario s, SimScenario::FromJson(scenario));
  return std::unique_ptr<Provider>(new SimProvider(std::move(s), home + "/instances", clock, spawner));
}

}  // namespace

StatusOr<ProviderSet> BuildProviders(const std::string& catalog_file, const std::string& home,
                                     const Clock* clock) {
  ProviderSet set;
  int cores = DetectHostCores(), gpus = DetectGpus();
  set.catalog = Catalog::BuiltinLocal(cores, gpus);
  set.spawner = std::make_unique<ProcessAgentSpawner>();
  set.owned["local"] = std::make_unique<LocalProvider>(home + "/instances", cores, gpus);
  if (catalog_file.empty()) return set;
  YARD_ASSIGN_OR_RETURN(Json j, ReadJsonFile(catalog_file, "catalog"));
  StatusOr<Catalog> file_catalog = Catalog::FromJson(j);
  if (!file_catalog.ok()) return file_catalog.status().WithContext(catalog_file);
  set.catalog.Merge(*file_catalog);
  Json providers = j.value("providers", Json::object());
  for (const auto& [name, settings] : providers.items()) {
    if (name == "sim") {
      YARD_ASSIGN_OR_RETURN(set.owned["sim"], MakeSim(settings, home, clock, set.spawner.get()));
    } else if (name != "local") {
      return InvalidArgument(catalog_file + ": unknown provider '" + name + "' (known: local, sim)");
    }
  }
  for (const auto& t : set.catalog.types())
    if (!set.owned.count(t.provider))
      return InvalidArgument(catalog_file + ": type '" + t.name + "' uses provider '" + t.provider +
                             "', which has no settings under \"providers\"");
  return set;
}

}  // namespace yard
