#include "server/request_json.h"

#include <algorithm>
#include <cstring>

namespace yard {

StatusOr<Json> ParseStrictObject(const std::string& body,
                                 std::initializer_list<const char*> allowed) {
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgument("the request body is not valid JSON");
  if (!j.is_object()) return InvalidArgument("the request body must be a JSON object");
  for (const auto& item : j.items()) {
    const std::string& key = item.key();  // not a structured binding: clang 14 cannot capture one
    bool known =
        std::any_of(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; });
    if (!known) {
      std::string names;
      for (const char* a : allowed) names += (names.empty() ? "" : ", ") + std::string(a);
      return InvalidArgument("unknown field '" + key + "' (known fields: " + names + ")");
    }
  }
  return j;
}

StatusOr<std::string> GetString(const Json& obj, const char* field, bool required,
                                const std::string& fallback) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) {
    if (required) return InvalidArgument(std::string("missing field '") + field + "'");
    return fallback;
  }
  if (!it->is_string())
    return InvalidArgument(std::string("field '") + field + "' must be a string");
  return it->get<std::string>();
}

StatusOr<double> GetNumber(const Json& obj, const char* field, double fallback) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_number())
    return InvalidArgument(std::string("field '") + field + "' must be a number");
  return it->get<double>();
}

StatusOr<std::vector<std::string>> GetStringList(const Json& obj, const char* field,
                                                 bool required) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) {
    if (required) return InvalidArgument(std::string("missing field '") + field + "'");
    return std::vector<std::string>{};
  }
  if (!it->is_array())
    return InvalidArgument(std::string("field '") + field + "' must be a list of strings");
  std::vector<std::string> out;
  for (const auto& v : *it) {
    if (!v.is_string())
      return InvalidArgument(std::string("field '") + field + "' must be a list of strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

}  // namespace yard
