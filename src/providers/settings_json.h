// SettingsReader: reads a provider's settings or a machine type's options
// (JSON objects from the catalog file) field by field, remembering the
// first error and refusing keys nobody asked for, so that a typo in the
// catalog is an error that names it rather than a setting silently ignored.
#pragma once

#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace yard {

class SettingsReader {
 public:
  // `where` names the object in messages ("providers.slurm").
  SettingsReader(const nlohmann::json& j, std::string where);

  // Each returns `fallback` when the key is absent (or after an error).
  std::string String(const std::string& key, const std::string& fallback);
  double Number(const std::string& key, double fallback);
  std::vector<std::string> Strings(const std::string& key);
  // The object or array under `key` as is (null when absent).
  nlohmann::json Raw(const std::string& key);

  // The first error: not an object, a wrong type, or an unknown key.
  Status Finish() const;

 private:
  const nlohmann::json* Get(const std::string& key);
  void Fail(const std::string& message);

  const nlohmann::json& j_;
  const std::string where_;
  std::set<std::string> read_;
  Status status_;
};

}  // namespace yard
