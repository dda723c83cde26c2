// EC2's error documents: parsing them and turning them into a Status.
// Internal to src/aws (the client and its tests); callers of Ec2Api see the
// result through Ec2Error and Status.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "aws/ec2.h"
#include "common/status.h"

namespace yard::aws {

// Reads EC2's error document
//   <Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>
// (also the <ErrorResponse><Error>...</Error><RequestId/> shape of the other
// Query APIs). nullopt when `body` is not such a document. Fills code,
// message, request id, http_status, kind and, for permission errors,
// missing_action ("ec2:" + `action` when the message names none).
std::optional<Ec2Error> ParseEc2Error(std::string_view body, int http_status,
                                      const std::string& action);

// `code` without a "Client."/"Server." prefix.
std::string WithoutEc2Prefix(const std::string& code);

// The IAM action named in a permission error's message
// ("... not authorized to perform: ec2:RunInstances on resource ..."), or "".
std::string ActionNamedIn(const std::string& message);

// The Status for an EC2 error of call `action`: EC2's code, message and
// request id verbatim, and for auth errors the missing IAM action. The Status
// code follows the kind: kCapacity -> ResourceExhausted, kAuth ->
// PermissionDenied, kBadRequest -> InvalidArgument, kNotFound -> NotFound,
// kTransient -> Unavailable.
Status Ec2ErrorStatus(const Ec2Error& error, const std::string& action);

}  // namespace yard::aws
