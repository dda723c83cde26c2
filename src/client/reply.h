// Checked reading of a server's JSON answer: every getter returns a Status
// instead of throwing, so an answer of an unexpected shape (a server of
// another version, a proxy's page) is an error that names the route and the
// field ("GET /v1/jobs?limit=5: jobs[2].id is a number, not a string"), with
// code kInternal (the CLI's commands exit with 70, EX_SOFTWARE, on it).
//
//   YARD_ASSIGN_OR_RETURN(Reply r, GetReply(client, "/v1/jobs"));
//   YARD_ASSIGN_OR_RETURN(std::vector<Reply> jobs, r.Array("jobs"));
//   for (const Reply& j : jobs) { YARD_ASSIGN_OR_RETURN(std::string id, j.Get<std::string>("id"));
//   }
//
// A Reply and the Replies taken from it share the answer: any of them may
// outlive the others. Not thread-safe to build; const use is.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/http_client.h"
#include "common/status.h"

namespace yard {

using Json = nlohmann::json;

class Reply {
 public:
  // The whole answer to `route` ("GET /v1/jobs?limit=5"), named in errors.
  Reply(Json answer, std::string route);

  // The member `key` of this object (present; null allowed). Fails when this
  // is not an object or has no such member.
  StatusOr<Reply> Field(std::string_view key) const;
  // This value as T: std::string, double, int64_t, int or bool (a number
  // with a fraction is not an int64_t/int).
  template <typename T>
  StatusOr<T> As() const;
  // Field(key).As<T>().
  template <typename T>
  StatusOr<T> Get(std::string_view key) const;
  // Like Get, but an absent or null member gives `fallback`; a member of
  // another type is still an error.
  template <typename T>
  StatusOr<T> GetOr(std::string_view key, T fallback) const;
  // A copy of this value, which must be an object.
  StatusOr<Json> AsObject() const;
  // The elements of this array / of the array member `key`.
  StatusOr<std::vector<Reply>> Elements() const;
  StatusOr<std::vector<Reply>> Array(std::string_view key) const;
  // The members of this object, by name.
  StatusOr<std::vector<std::pair<std::string, Reply>>> Members() const;

  // True if this is an object with member `key` (null or not).
  bool Has(std::string_view key) const;
  const Json& json() const { return *json_; }
  // Where this value sits in the answer: "jobs[2].id" ("" for the whole).
  const std::string& path() const { return path_; }

 private:
  struct Answer {
    Json json;
    std::string route;
  };
  Reply(std::shared_ptr<const Answer> answer, const Json* json, std::string path)
      : answer_(std::move(answer)), json_(json), path_(std::move(path)) {}
  // UnexpectedReply: "<route>: <path> is <what it is>, not <expected>".
  Status Mismatch(const char* expected) const;

  std::shared_ptr<const Answer> answer_;
  const Json* json_;  // within answer_->json
  std::string path_;
};

// client.Get(path) / client.Post(path, body) as a Reply to "GET path" /
// "POST path"; the call's own errors pass through.
StatusOr<Reply> GetReply(const HttpClient& client, const std::string& path);
StatusOr<Reply> PostReply(const HttpClient& client, const std::string& path, const Json& body);

// The Status of an answer to `route` that is not what we read: code
// kInternal, `what` and the advice to check the server's version.
Status UnexpectedReply(const std::string& route, const std::string& what);

template <>
StatusOr<std::string> Reply::As<std::string>() const;
template <>
StatusOr<double> Reply::As<double>() const;
template <>
StatusOr<int64_t> Reply::As<int64_t>() const;
template <>
StatusOr<int> Reply::As<int>() const;
template <>
StatusOr<bool> Reply::As<bool>() const;

template <typename T>
StatusOr<T> Reply::Get(std::string_view key) const {
  YARD_ASSIGN_OR_RETURN(Reply field, Field(key));
  return field.As<T>();
}

template <typename T>
StatusOr<T> Reply::GetOr(std::string_view key, T fallback) const {
  if (!Has(key)) {
    if (!json_->is_object()) return Mismatch("an object");
    return fallback;
  }
  YARD_ASSIGN_OR_RETURN(Reply field, Field(key));
  if (field.json().is_null()) return fallback;
  return field.As<T>();
}

}  // namespace yard
