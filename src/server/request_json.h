// Strict reading of request bodies: a body is an object whose keys must all
// be known, with typed getters that fail with a message naming the field.
#pragma once

#include <initializer_list>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace yard {

using Json = nlohmann::json;

// Parses `body` as a JSON object and refuses keys outside `allowed`.
StatusOr<Json> ParseStrictObject(const std::string& body,
                                 std::initializer_list<const char*> allowed);

// Typed field access: `required` fields must be present; absent optional
// fields give `fallback`. Wrong types are InvalidArgument naming the field.
StatusOr<std::string> GetString(const Json& obj, const char* field, bool required,
                                const std::string& fallback = "");
StatusOr<double> GetNumber(const Json& obj, const char* field, double fallback);
StatusOr<std::vector<std::string>> GetStringList(const Json& obj, const char* field, bool required);

}  // namespace yard
