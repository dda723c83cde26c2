// Ec2Api: the few EC2 Query API calls Trainyard's AWS provider needs.
//
// The real implementation (Ec2Client, ec2_client.h) speaks EC2's Query
// protocol (form-encoded POST, API version 2016-11-15, SigV4-signed, XML
// answers) over HTTP(S); tests run it against moto's EC2 server. The
// interface exists so that the provider's unit tests can inject faults; the
// provider's end-to-end tests always use the real client against moto.
//
// Errors: every call returns a Status whose message is EC2's own
// "<Code>: <Message>" (plus the request id) when EC2 answered with an
// error document; the code is classified by ClassifyEc2Error below.
// Thread safety: implementations are safe to call from several threads.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace yard::aws {

// What EC2's error code means for the caller (the scheduler acts on it).
enum class Ec2ErrorKind {
  kNone,        // not an EC2 error (a success, or a local failure)
  kCapacity,    // InsufficientInstanceCapacity, InstanceLimitExceeded,
                // SpotMaxPriceTooLow, MaxSpotInstanceCountExceeded,
                // Unsupported, InsufficientFreeAddressesInSubnet, and a
                // request limit (RequestLimitExceeded/Throttling) once the
                // client's retries with backoff ran out: try the next type
  kAuth,        // AuthFailure, UnauthorizedOperation, InvalidClientTokenId,
                // SignatureDoesNotMatch, OptInRequired, expired tokens: the
                // job fails at once, no fallback
  kBadRequest,  // InvalidAMIID.*, InvalidParameterValue, InvalidSubnetID.*,
                // InvalidGroup.*, InvalidKeyPair.*, ...: no fallback
  kNotFound,    // InvalidInstanceID.NotFound (Describe/Terminate)
  kTransient,   // 5xx other than the capacity codes, connection failures
};

struct Ec2Error {
  Ec2ErrorKind kind = Ec2ErrorKind::kNone;
  int http_status = 0;  // EC2's HTTP status; 0 when EC2 did not answer
  std::string code;     // EC2's code, e.g. "InsufficientInstanceCapacity"
  std::string message;  // EC2's message
  std::string request_id;
  // For kAuth errors about permissions (UnauthorizedOperation,
  // AccessDenied): the IAM action that was refused, as EC2 names it in the
  // message ("... not authorized to perform: ec2:RunInstances ..."), else
  // "ec2:" + the call's Action (the message then says it was inferred).
  // Empty for other errors.
  std::string missing_action;
};
// Classifies EC2's error code (a "Client."/"Server." prefix is ignored).
// A code not listed above is kTransient when `http_status` is 5xx, else
// kBadRequest. RequestLimitExceeded/Throttling classify as kCapacity: that is
// what a caller sees once the client's own retries have run out.
Ec2ErrorKind ClassifyEc2Error(const std::string& code, int http_status = 0);
// "capacity", "auth", "bad_request", "not_found", "transient", "none".
const char* Ec2ErrorKindName(Ec2ErrorKind kind);

struct Tag {
  std::string key;
  std::string value;
};

// RunInstances with MinCount = MaxCount = 1.
struct RunInstanceRequest {
  std::string image_id;                         // AMI
  std::string instance_type;                    // "p2.xlarge"
  bool spot = false;                            // InstanceMarketOptions: spot, one-time,
                                                // InstanceInterruptionBehavior terminate
  std::string subnet_id;                        // optional
  std::vector<std::string> security_group_ids;  // optional
  std::string key_name;                         // optional
  std::string iam_instance_profile;             // optional: a name or an ARN
  int root_volume_gb = 0;                       // 0: the AMI's default
  // The AMI's root device (DescribeImages' RootDeviceName): the
  // BlockDeviceMapping that resizes the root. A name that is not the
  // image's root adds a second volume and leaves the root as it was.
  std::string root_device_name = "/dev/sda1";
  std::string user_data;     // plain text; the client base64-encodes it
  std::vector<Tag> tags;     // TagSpecifications for instance and volume
  std::string client_token;  // idempotency token (our instance id)
};

struct Ec2Instance {
  std::string instance_id;  // "i-0123..."
  std::string state;        // pending|running|shutting-down|terminated|stopping|stopped
  std::string instance_type;
  std::string lifecycle;  // "spot" or "" (on-demand)
  std::string availability_zone;
  std::string private_ip;
  std::string public_ip;
  std::string state_reason;  // StateReason code, e.g. "Server.SpotInstanceTermination"
  double launch_time = 0;    // Unix seconds
  std::map<std::string, std::string> tags;
};

// One image as DescribeImages lists it.
struct Ec2Image {
  std::string image_id;  // "ami-0123..."
  std::string name;
  std::string state;             // available|pending|failed|deregistered|...
  std::string root_device_name;  // "/dev/sda1" (Ubuntu), "/dev/xvda" (Amazon Linux, Debian)
  std::string root_device_type;  // "ebs" or "instance-store"
};

struct SpotPrice {
  std::string instance_type;
  std::string availability_zone;
  double price_per_hour = 0;
  double timestamp = 0;  // Unix seconds
};

class Ec2Api {
 public:
  virtual ~Ec2Api() = default;
  // Launches one instance. On an EC2 error, `error` (if given) is filled.
  virtual StatusOr<Ec2Instance> RunInstance(const RunInstanceRequest& request,
                                            Ec2Error* error = nullptr) = 0;
  // Instances by id (empty: all) and tag filters ({"tag:trainyard:server": v}
  // style names as EC2's Filter.N.Name), following NextToken pages.
  virtual StatusOr<std::vector<Ec2Instance>> DescribeInstances(
      const std::vector<std::string>& instance_ids,
      const std::map<std::string, std::string>& filters, Ec2Error* error = nullptr) = 0;
  // Terminates; an id EC2 no longer knows is not an error.
  virtual Status TerminateInstances(const std::vector<std::string>& instance_ids,
                                    Ec2Error* error = nullptr) = 0;
  // The images with these AMI ids (ImageId.N). EC2 answers an unknown id
  // with InvalidAMIID.NotFound (a malformed one: .Malformed), and may list
  // nothing for an id it no longer shows: both mean the AMI is not there.
  virtual StatusOr<std::vector<Ec2Image>> DescribeImages(const std::vector<std::string>& image_ids,
                                                         Ec2Error* error = nullptr) = 0;
  // The newest spot price of `instance_type` (Linux/UNIX) per zone.
  virtual StatusOr<std::vector<SpotPrice>> DescribeSpotPriceHistory(
      const std::string& instance_type, Ec2Error* error = nullptr) = 0;
};

}  // namespace yard::aws
