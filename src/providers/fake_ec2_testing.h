// FakeEc2: an in-memory EC2 for the AWS provider's unit tests, with the
// faults the provider must handle (errors per instance type or call,
// instances that stay pending, instances EC2 ends on its own). End-to-end
// tests use the real client against moto instead.
#pragma once

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "aws/ec2.h"

namespace yard {

class FakeEc2 : public aws::Ec2Api {
 public:
  struct Fault {
    aws::Ec2ErrorKind kind = aws::Ec2ErrorKind::kCapacity;
    std::string code = "InsufficientInstanceCapacity";
    std::string message =
        "We currently do not have sufficient capacity in the Availability Zone you requested.";
    std::string missing_action;
  };

  StatusOr<aws::Ec2Instance> RunInstance(const aws::RunInstanceRequest& req,
                                         aws::Ec2Error* error) override {
    std::lock_guard<std::mutex> lock(mu_);
    runs.push_back(req);
    auto f = run_faults.find(req.instance_type);
    if (f != run_faults.end()) return Fail(f->second, error, "RunInstances");
    for (auto& [id, i] : instances)
      if (tokens_[id] == req.client_token) return i;
    aws::Ec2Instance i;
    char id[32];
    std::snprintf(id, sizeof(id), "i-%017d", next_++);
    i.instance_id = id;
    i.state = start_running ? "running" : "pending";
    i.instance_type = req.instance_type;
    i.lifecycle = req.spot ? "spot" : "";
    i.availability_zone = zone;
    i.private_ip = "127.1.1." + std::to_string(next_ + 9);
    for (const auto& t : req.tags) i.tags[t.key] = t.value;
    tokens_[id] = req.client_token;
    instances[id] = i;
    return i;
  }

  StatusOr<std::vector<aws::Ec2Instance>> DescribeInstances(
      const std::vector<std::string>& ids, const std::map<std::string, std::string>& filters,
      aws::Ec2Error* error) override {
    std::lock_guard<std::mutex> lock(mu_);
    describes++;
    if (describe_fault) return Fail(*describe_fault, error, "DescribeInstances");
    std::vector<aws::Ec2Instance> out;
    for (const auto& [id, i] : instances) {
      bool match = ids.empty() || std::find(ids.begin(), ids.end(), id) != ids.end();
      for (const auto& [name, value] : filters)
        if (name.rfind("tag:", 0) == 0) {
          auto t = i.tags.find(name.substr(4));
          match = match && t != i.tags.end() && t->second == value;
        }
      if (match) out.push_back(i);
    }
    return out;
  }

  Status TerminateInstances(const std::vector<std::string>& ids, aws::Ec2Error* error) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (terminate_fault) return Fail(*terminate_fault, error, "TerminateInstances");
    for (const auto& id : ids) {
      terminate_calls.push_back(id);
      auto it = instances.find(id);
      if (it != instances.end()) it->second.state = "terminated";
    }
    return Status::Ok();
  }

  // Lists the ids found in `images`; an id not there is EC2's
  // InvalidAMIID.NotFound unless it is in `unlisted_images` (listed empty).
  StatusOr<std::vector<aws::Ec2Image>> DescribeImages(const std::vector<std::string>& ids,
                                                      aws::Ec2Error* error) override {
    std::lock_guard<std::mutex> lock(mu_);
    image_calls.push_back(ids);
    if (images_fault) return Fail(*images_fault, error, "DescribeImages");
    std::vector<aws::Ec2Image> out;
    for (const auto& id : ids) {
      auto it = images.find(id);
      if (it != images.end())
        out.push_back(it->second);
      else if (!unlisted_images.count(id))
        return Fail({aws::Ec2ErrorKind::kBadRequest, "InvalidAMIID.NotFound",
                     "The image id '[" + id + "]' does not exist", ""},
                    error, "DescribeImages");
    }
    return out;
  }
  void AddImage(const std::string& id, const std::string& root_device_name) {
    aws::Ec2Image i;
    i.image_id = id;
    i.state = "available";
    i.root_device_name = root_device_name;
    i.root_device_type = "ebs";
    images[id] = i;
  }

  StatusOr<std::vector<aws::SpotPrice>> DescribeSpotPriceHistory(const std::string& type,
                                                                 aws::Ec2Error* error) override {
    std::lock_guard<std::mutex> lock(mu_);
    spot_price_calls++;
    std::vector<aws::SpotPrice> out;
    for (const auto& p : spot_prices)
      if (p.instance_type == type) out.push_back(p);
    return out;
  }

  // What EC2 does on its own (an instance leaves pending, a spot reclaim).
  void SetState(const std::string& ec2_id, const std::string& state,
                const std::string& reason = "") {
    std::lock_guard<std::mutex> lock(mu_);
    instances[ec2_id].state = state;
    instances[ec2_id].state_reason = reason;
  }
  void SetAllRunning() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, i] : instances)
      if (i.state == "pending") i.state = "running";
  }
  // Instances not terminated (any state but shutting-down/terminated).
  std::vector<aws::Ec2Instance> Live() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<aws::Ec2Instance> out;
    for (const auto& [id, i] : instances)
      if (i.state != "terminated" && i.state != "shutting-down") out.push_back(i);
    return out;
  }
  // A tagged instance made outside the provider (a leftover of an earlier run).
  void Plant(const std::string& ec2_id, std::map<std::string, std::string> tags,
             const std::string& state = "running") {
    std::lock_guard<std::mutex> lock(mu_);
    aws::Ec2Instance i;
    i.instance_id = ec2_id;
    i.state = state;
    i.availability_zone = zone;
    i.tags = std::move(tags);
    instances[ec2_id] = i;
  }

  // Public for tests to read and set (under their own single thread).
  std::map<std::string, Fault> run_faults;  // by instance type
  std::optional<Fault> describe_fault, terminate_fault, images_fault;
  std::map<std::string, aws::Ec2Image> images;  // by AMI id
  std::set<std::string> unlisted_images;        // answered with an empty list
  std::vector<std::vector<std::string>> image_calls;
  bool start_running = false;
  std::string zone = "us-east-1b";
  std::map<std::string, aws::Ec2Instance> instances;
  std::vector<aws::RunInstanceRequest> runs;
  std::vector<std::string> terminate_calls;
  std::vector<aws::SpotPrice> spot_prices;
  int describes = 0;
  int spot_price_calls = 0;

 private:
  // As Ec2Client words it: "EC2 <Action>: <Code>: <Message> (request id ...)".
  static Status Fail(const Fault& f, aws::Ec2Error* error, const std::string& action) {
    if (error) {
      *error = aws::Ec2Error{};
      error->kind = f.kind;
      error->code = f.code;
      error->message = f.message;
      error->request_id = "req-1";
      error->missing_action = f.missing_action;
    }
    return Unavailable("EC2 " + action + ": " + f.code + ": " + f.message + " (request id req-1)");
  }
  std::mutex mu_;
  std::map<std::string, std::string> tokens_;
  int next_ = 1;
};

}  // namespace yard
