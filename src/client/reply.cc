#include "client/reply.h"

#include <cmath>
#include <limits>

namespace yard {
namespace {

// What a JSON value is, in an error's words.
std::string Describe(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::object:
      return "an object";
    case Json::value_t::array:
      return "a list";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::boolean:
      return "true or false";
    case Json::value_t::number_float:
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "the number " + j.dump();
    default:
      return "not a JSON value";
  }
}

}  // namespace

Reply::Reply(Json answer, std::string route)
    : answer_(std::make_shared<const Answer>(Answer{std::move(answer), std::move(route)})),
      json_(&answer_->json) {}

Status UnexpectedReply(const std::string& route, const std::string& what) {
  return Status(
      Code::kInternal,
      route + ": " + what + " (is --server/$YARD_SERVER a Trainyard server of this version?)");
}

Status Reply::Mismatch(const char* expected) const {
  std::string where = path_.empty() ? "the answer" : path_;
  return UnexpectedReply(answer_->route, where + " is " + Describe(*json_) + ", not " + expected);
}

StatusOr<Reply> Reply::Field(std::string_view key) const {
  if (!json_->is_object()) return Mismatch("an object");
  auto it = json_->find(key);
  std::string path = path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  if (it == json_->end()) return UnexpectedReply(answer_->route, "the answer has no " + path);
  return Reply(answer_, &*it, std::move(path));
}

bool Reply::Has(std::string_view key) const { return json_->is_object() && json_->contains(key); }

template <>
StatusOr<std::string> Reply::As<std::string>() const {
  if (!json_->is_string()) return Mismatch("a string");
  return json_->get<std::string>();
}

template <>
StatusOr<double> Reply::As<double>() const {
  if (!json_->is_number()) return Mismatch("a number");
  return json_->get<double>();
}

template <>
StatusOr<int64_t> Reply::As<int64_t>() const {
  if (json_->is_number_integer()) {
    if (json_->is_number_unsigned() &&
        json_->get<uint64_t>() > uint64_t{std::numeric_limits<int64_t>::max()})
      return Mismatch("a whole number in range");
    return json_->get<int64_t>();
  }
  // JSON has one number type: 60.0 is as whole as 60 (a server computing a
  // duration in double writes the former).
  if (json_->is_number_float()) {
    double d = json_->get<double>();
    if (!std::isfinite(d) || d != std::trunc(d)) return Mismatch("a whole number");
    if (d < -9223372036854775808.0 || d >= 9223372036854775808.0)
      return Mismatch("a whole number in range");
    return static_cast<int64_t>(d);
  }
  return Mismatch("a whole number");
}

template <>
StatusOr<int> Reply::As<int>() const {
  YARD_ASSIGN_OR_RETURN(int64_t v, As<int64_t>());
  if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max())
    return Mismatch("a whole number in range");
  return static_cast<int>(v);
}

template <>
StatusOr<bool> Reply::As<bool>() const {
  if (!json_->is_boolean()) return Mismatch("true or false");
  return json_->get<bool>();
}

StatusOr<Json> Reply::AsObject() const {
  if (!json_->is_object()) return Mismatch("an object");
  return *json_;
}

StatusOr<std::vector<Reply>> Reply::Elements() const {
  if (!json_->is_array()) return Mismatch("a list");
  std::vector<Reply> out;
  out.reserve(json_->size());
  for (size_t i = 0; i < json_->size(); ++i)
    out.push_back(Reply(answer_, &(*json_)[i], path_ + "[" + std::to_string(i) + "]"));
  return out;
}

StatusOr<std::vector<Reply>> Reply::Array(std::string_view key) const {
  YARD_ASSIGN_OR_RETURN(Reply field, Field(key));
  return field.Elements();
}

StatusOr<std::vector<std::pair<std::string, Reply>>> Reply::Members() const {
  if (!json_->is_object()) return Mismatch("an object");
  std::vector<std::pair<std::string, Reply>> out;
  for (auto it = json_->begin(); it != json_->end(); ++it) {
    std::string path = path_.empty() ? it.key() : path_ + "." + it.key();
    out.emplace_back(it.key(), Reply(answer_, &it.value(), std::move(path)));
  }
  return out;
}

StatusOr<Reply> GetReply(const HttpClient& client, const std::string& path) {
  YARD_ASSIGN_OR_RETURN(Json answer, client.Get(path));
  return Reply(std::move(answer), "GET " + path);
}

StatusOr<Reply> PostReply(const HttpClient& client, const std::string& path, const Json& body) {
  YARD_ASSIGN_OR_RETURN(Json answer, client.Post(path, body));
  return Reply(std::move(answer), "POST " + path);
}

}  // namespace yard
