#include "aws/ec2_errors.h"

#include <pugixml.hpp>

#include <array>
#include <regex>

#include "aws/xml.h"

namespace yard::aws {
namespace {

constexpr std::array kCapacityCodes = {"InsufficientInstanceCapacity",
                                       "InstanceLimitExceeded",
                                       "SpotMaxPriceTooLow",
                                       "MaxSpotInstanceCountExceeded",
                                       "Unsupported",
                                       "InsufficientFreeAddressesInSubnet",
                                       "InsufficientHostCapacity",
                                       "InsufficientCapacity",
                                       "VcpuLimitExceeded",
                                       "RequestLimitExceeded",
                                       "Throttling",
                                       "ThrottlingException"};
constexpr std::array kAuthCodes = {"AuthFailure",
                                   "UnauthorizedOperation",
                                   "InvalidClientTokenId",
                                   "SignatureDoesNotMatch",
                                   "OptInRequired",
                                   "ExpiredToken",
                                   "RequestExpired",
                                   "AccessDenied",
                                   "AccessDeniedException",
                                   "UnrecognizedClientException",
                                   "MissingAuthenticationToken",
                                   "IncompleteSignature",
                                   "InvalidAccessKeyId",
                                   "Blocked",
                                   "PendingVerification"};
constexpr std::array kTransientCodes = {"InternalError", "InternalFailure", "ServiceUnavailable",
                                        "Unavailable",   "ServerInternal",  "RequestTimeout"};

template <size_t N>
bool In(const std::array<const char*, N>& codes, const std::string& code) {
  for (const char* c : codes)
    if (code == c) return true;
  return false;
}

Code StatusCodeFor(Ec2ErrorKind kind) {
  switch (kind) {
    case Ec2ErrorKind::kCapacity:
      return Code::kResourceExhausted;
    case Ec2ErrorKind::kAuth:
      return Code::kPermissionDenied;
    case Ec2ErrorKind::kBadRequest:
      return Code::kInvalidArgument;
    case Ec2ErrorKind::kNotFound:
      return Code::kNotFound;
    case Ec2ErrorKind::kTransient:
      return Code::kUnavailable;
    case Ec2ErrorKind::kNone:
      break;
  }
  return Code::kInternal;
}

bool IsPermissionError(const std::string& code) {
  std::string c = WithoutEc2Prefix(code);
  return c == "UnauthorizedOperation" || c == "AccessDenied" || c == "AccessDeniedException";
}

}  // namespace

std::string WithoutEc2Prefix(const std::string& code) {
  for (const char* prefix : {"Client.", "Server."}) {
    if (code.rfind(prefix, 0) == 0) return code.substr(std::string(prefix).size());
  }
  return code;
}

Ec2ErrorKind ClassifyEc2Error(const std::string& raw_code, int http_status) {
  std::string code = WithoutEc2Prefix(raw_code);
  if (code.empty()) return http_status >= 500 ? Ec2ErrorKind::kTransient : Ec2ErrorKind::kNone;
  if (In(kCapacityCodes, code)) return Ec2ErrorKind::kCapacity;
  if (In(kAuthCodes, code)) return Ec2ErrorKind::kAuth;
  if (In(kTransientCodes, code)) return Ec2ErrorKind::kTransient;
  if (code.ends_with(".NotFound") && code.starts_with("InvalidInstanceID")) {
    return Ec2ErrorKind::kNotFound;
  }
  return http_status >= 500 ? Ec2ErrorKind::kTransient : Ec2ErrorKind::kBadRequest;
}

const char* Ec2ErrorKindName(Ec2ErrorKind kind) {
  switch (kind) {
    case Ec2ErrorKind::kCapacity:
      return "capacity";
    case Ec2ErrorKind::kAuth:
      return "auth";
    case Ec2ErrorKind::kBadRequest:
      return "bad_request";
    case Ec2ErrorKind::kNotFound:
      return "not_found";
    case Ec2ErrorKind::kTransient:
      return "transient";
    case Ec2ErrorKind::kNone:
      break;
  }
  return "none";
}

std::string ActionNamedIn(const std::string& message) {
  static const std::regex kPattern(
      R"(not authorized to perform:?\s+([A-Za-z0-9-]+:[A-Za-z0-9*]+))");
  std::smatch m;
  return std::regex_search(message, m, kPattern) ? m[1].str() : "";
}

std::optional<Ec2Error> ParseEc2Error(std::string_view body, int http_status,
                                      const std::string& action) {
  pugi::xml_document doc;
  if (!doc.load_buffer(body.data(), body.size())) return std::nullopt;
  pugi::xml_node root = doc.document_element();
  pugi::xml_node error = xml::Child(xml::Child(root, "Errors"), "Error");
  if (!error) error = xml::Child(root, "Error");
  if (!error || xml::Text(error, "Code").empty()) return std::nullopt;
  Ec2Error e;
  e.http_status = http_status;
  e.code = xml::Text(error, "Code");
  e.message = xml::Text(error, "Message");
  e.request_id = xml::Text(root, "RequestID");
  if (e.request_id.empty()) e.request_id = xml::Text(root, "RequestId");
  e.kind = ClassifyEc2Error(e.code, http_status);
  if (IsPermissionError(e.code)) {
    e.missing_action = ActionNamedIn(e.message);
    if (e.missing_action.empty()) e.missing_action = "ec2:" + action;
  }
  return e;
}

Status Ec2ErrorStatus(const Ec2Error& e, const std::string& action) {
  std::string text = "EC2 " + action + ": " + e.code + ": " + e.message;
  if (!e.request_id.empty()) text += " (request id " + e.request_id + ")";
  if (!e.missing_action.empty()) {
    bool named = ActionNamedIn(e.message) == e.missing_action;
    text += "; the credentials lack the IAM permission " + e.missing_action;
    if (!named) text += " (EC2 did not name it: this is the action of the refused call)";
  } else if (e.kind == Ec2ErrorKind::kAuth) {
    text += "; check the AWS credentials (key, secret, session token, clock)";
  }
  return Status(StatusCodeFor(e.kind), text);
}

}  // namespace yard::aws
