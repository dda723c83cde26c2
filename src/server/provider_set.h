// Building the providers a server runs from its catalog file.
//
// The catalog file (docs/formats.md, "Machine catalog") lists machine types
// and, under "providers", each provider's settings:
//   {"version": 1, "types": [...],
//    "providers": {"sim": {"scenario": {...}} | {"scenario_file": "path"},
//                  "slurm": {...}, "ssh": {...}}}   (docs/providers.md)
// The local provider and its built-in types always exist.
#pragma once

#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "providers/agent_spawner.h"
#include "providers/catalog.h"
#include "providers/provider.h"

namespace yard {

struct ProviderSet {
  Catalog catalog;
  std::map<std::string, std::unique_ptr<Provider>> owned;
  std::unique_ptr<AgentSpawner> spawner;
  std::map<std::string, Provider*> Pointers() const;
};

// `catalog_file` may be empty (built-in local types only). `home` holds the
// instances' folders.
StatusOr<ProviderSet> BuildProviders(const std::string& catalog_file, const std::string& home,
                                     const Clock* clock);

}  // namespace yard
