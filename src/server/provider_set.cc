#include "server/provider_set.h"

#include "aws/ec2_client.h"
#include "common/files.h"
#include "providers/aws_provider.h"
#include "providers/local_provider.h"
#include "providers/sim_provider.h"
#include "providers/slurm_provider.h"
#include "providers/ssh_provider.h"

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
  return std::unique_ptr<Provider>(
      new SimProvider(std::move(s), home + "/instances", clock, spawner));
}

StatusOr<std::unique_ptr<Provider>> MakeSlurm(const Json& settings, const std::string& home,
                                              const Catalog& catalog, const Clock* clock) {
  YARD_ASSIGN_OR_RETURN(SlurmSettings s, SlurmSettings::FromJson(settings, home));
  for (const auto& t : catalog.types())  // options errors now, not at the first job
    if (t.provider == "slurm") YARD_RETURN_IF_ERROR(SlurmRequest::ForType(t).status());
  return std::unique_ptr<Provider>(
      new SlurmProvider(std::move(s), std::make_unique<ProcessCommandRunner>(), clock));
}

StatusOr<std::unique_ptr<Provider>> MakeSsh(const Json& settings, const std::string& home,
                                            const Catalog& catalog) {
  YARD_ASSIGN_OR_RETURN(SshSettings s, SshSettings::FromJson(settings, home));
  YARD_ASSIGN_OR_RETURN(auto hosts, SshHostsByType(catalog, s));
  return std::unique_ptr<Provider>(
      new SshProvider(std::move(s), std::move(hosts), std::make_unique<ProcessCommandRunner>()));
}

// The EC2 client of `s` (credentials chain, endpoint; src/aws).
std::shared_ptr<aws::Ec2Api> NewEc2Client(const AwsSettings& s) {
  aws::Environment env = aws::ProcessEnvironment();
  aws::Ec2ClientOptions o;
  o.region = s.region;
  o.endpoint = aws::Ec2Endpoint(s.region, s.endpoint_url, env);
  std::shared_ptr<aws::CredentialsProvider> credentials = aws::DefaultCredentialsChain(env);
  return std::make_shared<aws::Ec2Client>(std::move(o), std::move(credentials));
}

StatusOr<std::unique_ptr<Provider>> MakeAws(const Json& settings, const std::string& home,
                                            const Catalog& catalog) {
  YARD_ASSIGN_OR_RETURN(AwsSettings s, AwsSettings::FromJson(settings, home));
  for (const auto& t : catalog.types())  // options errors now, not at the first job
    if (t.provider == "aws") YARD_RETURN_IF_ERROR(AwsLaunchSpec::ForType(t, s.region).status());
  std::shared_ptr<aws::Ec2Api> ec2 = NewEc2Client(s);
  return std::unique_ptr<Provider>(new AwsProvider(std::move(s), std::move(ec2)));
}

}  // namespace

StatusOr<ProviderSet> BuildProviders(const std::string& catalog_file, const std::string& home,
                                     const Clock* clock) {
  ProviderSet set;
  int cores = DetectHostCores(), gpus = DetectGpus();
  set.catalog = Catalog::BuiltinLocal(cores, gpus);
  set.spawner = std::make_unique<ProcessAgentSpawner>();
  set.owned["local"] =
      std::make_unique<LocalProvider>(home + "/instances", cores, gpus, set.spawner.get());
  if (catalog_file.empty()) return set;
  YARD_ASSIGN_OR_RETURN(Json j, ReadJsonFile(catalog_file, "catalog"));
  StatusOr<Catalog> file_catalog = Catalog::FromJson(j);
  if (!file_catalog.ok()) return file_catalog.status().WithContext(catalog_file);
  set.catalog.Merge(*file_catalog);
  Json providers = j.value("providers", Json::object());
  for (const auto& [name, settings] : providers.items()) {
    if (name == "sim") {
      YARD_ASSIGN_OR_RETURN(set.owned["sim"], MakeSim(settings, home, clock, set.spawner.get()));
    } else if (name == "slurm") {
      StatusOr<std::unique_ptr<Provider>> p = MakeSlurm(settings, home, set.catalog, clock);
      if (!p.ok()) return p.status().WithContext(catalog_file);
      set.owned["slurm"] = std::move(*p);
    } else if (name == "ssh") {
      StatusOr<std::unique_ptr<Provider>> p = MakeSsh(settings, home, set.catalog);
      if (!p.ok()) return p.status().WithContext(catalog_file);
      set.owned["ssh"] = std::move(*p);
    } else if (name == "aws") {
      StatusOr<std::unique_ptr<Provider>> p = MakeAws(settings, home, set.catalog);
      if (!p.ok()) return p.status().WithContext(catalog_file);
      set.owned["aws"] = std::move(*p);
    } else if (name != "local") {
      return InvalidArgument(catalog_file + ": unknown provider '" + name +
                             "' (known: local, sim, slurm, ssh, aws)");
    }
  }
  for (const auto& t : set.catalog.types())
    if (!set.owned.count(t.provider))
      return InvalidArgument(catalog_file + ": type '" + t.name + "' uses provider '" + t.provider +
                             "', which has no settings under \"providers\"");
  return set;
}

}  // namespace yard
