#include "providers/settings_json.h"

namespace yard {

using Json = nlohmann::json;

SettingsReader::SettingsReader(const Json& j, std::string where) : j_(j), where_(std::move(where)) {
  if (!j_.is_null() && !j_.is_object()) Fail("must be an object");
}

void SettingsReader::Fail(const std::string& message) {
  if (status_.ok()) status_ = InvalidArgument(where_ + ": " + message);
}

const Json* SettingsReader::Get(const std::string& key) {
  read_.insert(key);
  if (!j_.is_object() || !j_.contains(key)) return nullptr;
  return &j_[key];
}

std::string SettingsReader::String(const std::string& key, const std::string& fallback) {
  const Json* v = Get(key);
  if (!v) return fallback;
  if (!v->is_string()) {
    Fail("\"" + key + "\" must be a string");
    return fallback;
  }
  return v->get<std::string>();
}

double SettingsReader::Number(const std::string& key, double fallback) {
  const Json* v = Get(key);
  if (!v) return fallback;
  if (!v->is_number()) {
    Fail("\"" + key + "\" must be a number");
    return fallback;
  }
  return v->get<double>();
}

std::vector<std::string> SettingsReader::Strings(const std::string& key) {
  const Json* v = Get(key);
  std::vector<std::string> out;
  if (!v) return out;
  bool ok = v->is_array();
  for (size_t i = 0; ok && i < v->size(); ++i) ok = (*v)[i].is_string();
  if (!ok) {
    Fail("\"" + key + "\" must be a list of strings");
    return out;
  }
  return v->get<std::vector<std::string>>();
}

Json SettingsReader::Raw(const std::string& key) {
  const Json* v = Get(key);
  return v ? *v : Json();
}

Status SettingsReader::Finish() const {
  if (!status_.ok()) return status_;
  if (!j_.is_object()) return Status::Ok();
  for (const auto& [key, value] : j_.items())
    if (!read_.count(key))
      return InvalidArgument(where_ + ": unknown key \"" + key + "\" (known: " + [&] {
        std::string known;
        for (const auto& k : read_) known += (known.empty() ? "" : ", ") + k;
        return known;
      }() + ")");
  return Status::Ok();
}

}  // namespace yard
