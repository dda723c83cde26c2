#include "aws/ec2_client.h"

#include <httplib.h>
#include <openssl/evp.h>
#include <pugixml.hpp>

#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <sstream>
#include <thread>

#include "aws/ec2_errors.h"
#include "aws/sigv4.h"
#include "aws/xml.h"

namespace yard::aws {
namespace {

constexpr char kApiVersion[] = "2016-11-15";
constexpr char kCaBundle[] = "/etc/ssl/certs/ca-certificates.crt";

std::string Base64(const std::string& s) {
  std::string out(4 * ((s.size() + 2) / 3) + 1, '\0');
  int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(s.data()), static_cast<int>(s.size()));
  out.resize(n);
  return out;
}

// application/x-www-form-urlencoded as botocore writes it (Python's
// urlencode): unreserved characters as they are, space as '+', the rest
// %XX. moto checks signatures over the parameters it parsed, encoded again
// this way, so any other spelling of a space fails there (AWS itself signs
// the bytes sent).
std::string FormEncodeValue(const std::string& s) {
  std::string out;
  size_t start = 0;
  for (size_t space = s.find(' ');; space = s.find(' ', start)) {
    out +=
        UriEncode(s.substr(start, space == std::string::npos ? std::string::npos : space - start));
    if (space == std::string::npos) break;
    out += '+';
    start = space + 1;
  }
  return out;
}

std::string FormEncode(const QueryParams& params) {
  std::string out;
  for (const auto& [k, v] : params) {
    out += (out.empty() ? "" : "&") + FormEncodeValue(k) + "=" + FormEncodeValue(v);
  }
  return out;
}

// "2026-12-06T03:00:00.000Z" -> Unix seconds; 0 if unparsable.
double ParseTime(const std::string& s) {
  std::tm tm{};
  std::istringstream in(s);
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%S");
  return in.fail() ? 0 : static_cast<double>(timegm(&tm));
}

std::string IsoTime(double t) {
  std::time_t secs = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The host[:port] part of an endpoint URL, as the Host header carries it.
std::string HostOf(const std::string& endpoint) {
  size_t start = endpoint.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  size_t end = endpoint.find('/', start);
  return endpoint.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

std::string SchemeHost(const std::string& endpoint) {
  size_t start = endpoint.find("://");
  size_t end = endpoint.find('/', start == std::string::npos ? 0 : start + 3);
  return endpoint.substr(0, end);
}

Ec2Instance ParseInstance(pugi::xml_node item) {
  Ec2Instance i;
  i.instance_id = xml::Text(item, "instanceId");
  i.state = xml::Path(item, "instanceState/name").child_value();
  i.instance_type = xml::Text(item, "instanceType");
  i.lifecycle = xml::Text(item, "instanceLifecycle");
  i.availability_zone = xml::Path(item, "placement/availabilityZone").child_value();
  i.private_ip = xml::Text(item, "privateIpAddress");
  i.public_ip = xml::Text(item, "ipAddress");
  i.state_reason = xml::Path(item, "stateReason/code").child_value();
  i.launch_time = ParseTime(xml::Text(item, "launchTime"));
  for (pugi::xml_node tag : xml::Children(xml::Child(item, "tagSet"), "item")) {
    i.tags[xml::Text(tag, "key")] = xml::Text(tag, "value");
  }
  return i;
}

StatusOr<pugi::xml_node> Root(pugi::xml_document& doc, const std::string& body,
                              const std::string& action) {
  if (!doc.load_buffer(body.data(), body.size())) {
    return Internal("EC2 " + action + ": the answer is not XML: " + body.substr(0, 200));
  }
  return doc.document_element();
}

bool IsThrottling(const std::string& code) {
  return code == "RequestLimitExceeded" || code == "Throttling" || code == "ThrottlingException" ||
         code == "RequestThrottled";
}

std::string RandomToken(std::mt19937_64& rng) {
  std::ostringstream out;
  out << "yard-" << std::hex << rng() << rng();
  return out.str();
}

}  // namespace

Ec2Client::Ec2Client(Ec2ClientOptions options, std::shared_ptr<CredentialsProvider> credentials,
                     std::function<void(double)> sleep, const Clock* clock)
    : options_(std::move(options)),
      credentials_(std::move(credentials)),
      sleep_(sleep
                 ? std::move(sleep)
                 : [](double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }),
      clock_(clock ? clock : &real_clock_),
      rng_(std::random_device{}()) {}

double Ec2Client::Backoff(int retry) {
  double cap = std::min(options_.max_backoff_s, options_.base_backoff_s * std::pow(2.0, retry));
  MutexLock lock(rng_mu_);
  return std::uniform_real_distribution<double>(0, cap)(rng_);
}

Ec2Client::Answer Ec2Client::Send(const std::string& body, const Credentials& credentials) {
  HttpRequestToSign req{"POST",
                        "/",
                        "",
                        {{"Host", HostOf(options_.endpoint)},
                         {"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}},
                        body};
  SignRequest(req, credentials, {options_.region, "ec2"}, clock_->Now());
  httplib::Client client(SchemeHost(options_.endpoint));
  if (!options_.ca_file.empty()) {
    client.set_ca_cert_path(options_.ca_file.c_str());
  } else if (std::filesystem::exists(kCaBundle)) {
    client.set_ca_cert_path(kCaBundle);
  }
  auto us = [](double s) { return std::chrono::microseconds(static_cast<int64_t>(s * 1e6)); };
  client.set_connection_timeout(us(options_.connect_timeout_s));
  client.set_read_timeout(us(options_.read_timeout_s));
  httplib::Headers headers;
  for (const auto& [k, v] : req.headers) {
    if (k != "Content-Type") headers.emplace(k, v);
  }
  auto res = client.Post("/", headers, body, "application/x-www-form-urlencoded; charset=utf-8");
  Answer a;
  if (!res) {
    a.transport_error = httplib::to_string(res.error());
    a.untrusted = res.error() == httplib::Error::SSLServerVerification ||
                  res.error() == httplib::Error::SSLLoadingCerts;
    return a;
  }
  a.status = res->status;
  a.body = res->body;
  return a;
}

StatusOr<std::string> Ec2Client::Call(const std::string& action, const QueryParams& params,
                                      Ec2Error* error) {
  QueryParams all{{"Action", action}, {"Version", kApiVersion}};
  all.insert(all.end(), params.begin(), params.end());
  std::string body = FormEncode(all);
  Ec2Error last;
  std::string failure;
  for (int attempt = 0; attempt < std::max(1, options_.max_attempts); ++attempt) {
    if (attempt > 0) sleep_(Backoff(attempt - 1));
    auto creds = credentials_->Get();
    if (!creds.ok()) return creds.status().WithContext("EC2 " + action);
    Answer a = Send(body, *creds);
    if (a.status >= 200 && a.status < 300) return a.body;
    if (a.status == 0) {
      last = Ec2Error{Ec2ErrorKind::kTransient, 0, "", a.transport_error, "", ""};
      failure =
          "EC2 " + action + ": no answer from " + options_.endpoint + ": " + a.transport_error;
      if (!a.untrusted) continue;
      failure = "EC2 " + action + ": the TLS certificate of " + options_.endpoint +
                " is not trusted (" + a.transport_error + "; CA bundle " +
                (options_.ca_file.empty() ? std::string(kCaBundle) : options_.ca_file) + ")";
      if (error) *error = last;
      return Unavailable(failure);
    }
    auto parsed = ParseEc2Error(a.body, a.status, action);
    if (!parsed) {
      last = Ec2Error{a.status >= 500 ? Ec2ErrorKind::kTransient : Ec2ErrorKind::kBadRequest,
                      a.status,
                      "",
                      a.body.substr(0, 300),
                      "",
                      ""};
      failure = "EC2 " + action + ": HTTP " + std::to_string(a.status) + " from " +
                options_.endpoint + ": " + a.body.substr(0, 300);
      if (a.status < 500) break;
      continue;
    }
    last = *parsed;
    failure.clear();
    if (!(last.kind == Ec2ErrorKind::kTransient || IsThrottling(WithoutEc2Prefix(last.code))))
      break;
  }
  if (error) *error = last;
  Status s = failure.empty()
                 ? Ec2ErrorStatus(last, action)
                 : Status(last.kind == Ec2ErrorKind::kTransient ? Code::kUnavailable
                                                                : Code::kInvalidArgument,
                          failure);
  bool retried = last.kind == Ec2ErrorKind::kTransient || IsThrottling(WithoutEc2Prefix(last.code));
  if (retried && options_.max_attempts > 1) {
    s = Status(s.code(), s.message() + " (gave up after " + std::to_string(options_.max_attempts) +
                             " attempts)");
  }
  return s;
}

QueryParams Ec2Client::RunInstancesParams(const RunInstanceRequest& r, const std::string& token) {
  QueryParams p{{"ImageId", r.image_id}, {"InstanceType", r.instance_type},
                {"MinCount", "1"},       {"MaxCount", "1"},
                {"ClientToken", token},  {"InstanceInitiatedShutdownBehavior", "terminate"}};
  if (r.spot) {
    p.insert(p.end(),
             {{"InstanceMarketOptions.MarketType", "spot"},
              {"InstanceMarketOptions.SpotOptions.SpotInstanceType", "one-time"},
              {"InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior", "terminate"}});
  }
  if (!r.subnet_id.empty()) p.emplace_back("SubnetId", r.subnet_id);
  for (size_t i = 0; i < r.security_group_ids.size(); ++i) {
    p.emplace_back("SecurityGroupId." + std::to_string(i + 1), r.security_group_ids[i]);
  }
  if (!r.key_name.empty()) p.emplace_back("KeyName", r.key_name);
  if (!r.iam_instance_profile.empty()) {
    bool arn = r.iam_instance_profile.rfind("arn:", 0) == 0;
    p.emplace_back(arn ? "IamInstanceProfile.Arn" : "IamInstanceProfile.Name",
                   r.iam_instance_profile);
  }
  if (r.root_volume_gb > 0) {
    p.insert(p.end(), {{"BlockDeviceMapping.1.DeviceName", r.root_device_name},
                       {"BlockDeviceMapping.1.Ebs.VolumeSize", std::to_string(r.root_volume_gb)},
                       {"BlockDeviceMapping.1.Ebs.DeleteOnTermination", "true"}});
  }
  if (!r.user_data.empty()) p.emplace_back("UserData", Base64(r.user_data));
  if (!r.tags.empty()) {
    int spec = 1;
    for (const char* resource : {"instance", "volume"}) {
      std::string prefix = "TagSpecification." + std::to_string(spec++);
      p.emplace_back(prefix + ".ResourceType", resource);
      for (size_t i = 0; i < r.tags.size(); ++i) {
        std::string tag = prefix + ".Tag." + std::to_string(i + 1);
        p.emplace_back(tag + ".Key", r.tags[i].key);
        p.emplace_back(tag + ".Value", r.tags[i].value);
      }
    }
  }
  return p;
}

StatusOr<Ec2Instance> Ec2Client::RunInstance(const RunInstanceRequest& request, Ec2Error* error) {
  std::string token = request.client_token;
  if (token.empty()) {
    MutexLock lock(rng_mu_);
    token = RandomToken(rng_);
  }
  YARD_ASSIGN_OR_RETURN(std::string body,
                        Call("RunInstances", RunInstancesParams(request, token), error));
  pugi::xml_document doc;
  YARD_ASSIGN_OR_RETURN(pugi::xml_node root, Root(doc, body, "RunInstances"));
  pugi::xml_node item = xml::Child(xml::Child(root, "instancesSet"), "item");
  if (!item)
    return Internal("EC2 RunInstances: the answer has no instance: " + body.substr(0, 300));
  return ParseInstance(item);
}

StatusOr<std::vector<Ec2Instance>> Ec2Client::DescribeInstances(
    const std::vector<std::string>& ids, const std::map<std::string, std::string>& filters,
    Ec2Error* error) {
  QueryParams base;
  for (size_t i = 0; i < ids.size(); ++i)
    base.emplace_back("InstanceId." + std::to_string(i + 1), ids[i]);
  int n = 1;
  for (const auto& [name, value] : filters) {
    std::string prefix = "Filter." + std::to_string(n++);
    base.emplace_back(prefix + ".Name", name);
    base.emplace_back(prefix + ".Value.1", value);
  }
  // EC2 refuses MaxResults together with instance ids.
  if (ids.empty() && options_.describe_page_size > 0) {
    base.emplace_back("MaxResults", std::to_string(options_.describe_page_size));
  }
  std::vector<Ec2Instance> out;
  std::string next;
  do {
    QueryParams params = base;
    if (!next.empty()) params.emplace_back("NextToken", next);
    YARD_ASSIGN_OR_RETURN(std::string body, Call("DescribeInstances", params, error));
    pugi::xml_document doc;
    YARD_ASSIGN_OR_RETURN(pugi::xml_node root, Root(doc, body, "DescribeInstances"));
    for (pugi::xml_node r : xml::Children(xml::Child(root, "reservationSet"), "item")) {
      for (pugi::xml_node i : xml::Children(xml::Child(r, "instancesSet"), "item")) {
        out.push_back(ParseInstance(i));
      }
    }
    next = xml::Text(root, "nextToken");
  } while (!next.empty());
  return out;
}

Status Ec2Client::TerminateInstances(const std::vector<std::string>& ids, Ec2Error* error) {
  if (ids.empty()) return Status::Ok();
  QueryParams params;
  for (size_t i = 0; i < ids.size(); ++i)
    params.emplace_back("InstanceId." + std::to_string(i + 1), ids[i]);
  Ec2Error e;
  auto r = Call("TerminateInstances", params, &e);
  if (r.ok()) return Status::Ok();
  if (e.kind != Ec2ErrorKind::kNotFound) {
    if (error) *error = e;
    return r.status();
  }
  // EC2 refuses the whole call when one id is unknown: end the others.
  return ids.size() == 1 ? Status::Ok() : TerminateOneByOne(ids, error);
}

Status Ec2Client::TerminateOneByOne(const std::vector<std::string>& ids, Ec2Error* error) {
  for (const auto& id : ids) YARD_RETURN_IF_ERROR(TerminateInstances({id}, error));
  return Status::Ok();
}

StatusOr<std::vector<Ec2Image>> Ec2Client::ParseDescribeImages(const std::string& body) {
  pugi::xml_document doc;
  YARD_ASSIGN_OR_RETURN(pugi::xml_node root, Root(doc, body, "DescribeImages"));
  std::vector<Ec2Image> out;
  for (pugi::xml_node item : xml::Children(xml::Child(root, "imagesSet"), "item")) {
    Ec2Image i;
    i.image_id = xml::Text(item, "imageId");
    i.name = xml::Text(item, "name");
    i.state = xml::Text(item, "imageState");
    i.root_device_name = xml::Text(item, "rootDeviceName");
    i.root_device_type = xml::Text(item, "rootDeviceType");
    out.push_back(std::move(i));
  }
  return out;
}

StatusOr<std::vector<Ec2Image>> Ec2Client::DescribeImages(const std::vector<std::string>& ids,
                                                          Ec2Error* error) {
  QueryParams params;
  for (size_t i = 0; i < ids.size(); ++i)
    params.emplace_back("ImageId." + std::to_string(i + 1), ids[i]);
  YARD_ASSIGN_OR_RETURN(std::string body, Call("DescribeImages", params, error));
  return ParseDescribeImages(body);
}

StatusOr<std::vector<SpotPrice>> Ec2Client::DescribeSpotPriceHistory(const std::string& type,
                                                                     Ec2Error* error) {
  // With StartTime = now EC2 answers the price in effect now, per zone.
  QueryParams base{{"InstanceType.1", type},
                   {"ProductDescription.1", "Linux/UNIX"},
                   {"StartTime", IsoTime(clock_->Now())}};
  std::map<std::string, SpotPrice> newest;  // by zone
  std::string next;
  do {
    QueryParams params = base;
    if (!next.empty()) params.emplace_back("NextToken", next);
    YARD_ASSIGN_OR_RETURN(std::string body, Call("DescribeSpotPriceHistory", params, error));
    pugi::xml_document doc;
    YARD_ASSIGN_OR_RETURN(pugi::xml_node root, Root(doc, body, "DescribeSpotPriceHistory"));
    for (pugi::xml_node item : xml::Children(xml::Child(root, "spotPriceHistorySet"), "item")) {
      SpotPrice p;
      p.instance_type = xml::Text(item, "instanceType");
      p.availability_zone = xml::Text(item, "availabilityZone");
      p.price_per_hour = std::atof(xml::Text(item, "spotPrice").c_str());
      p.timestamp = ParseTime(xml::Text(item, "timestamp"));
      if (p.instance_type != type) continue;
      auto it = newest.find(p.availability_zone);
      if (it == newest.end() || it->second.timestamp < p.timestamp) newest[p.availability_zone] = p;
    }
    next = xml::Text(root, "nextToken");
  } while (!next.empty());
  std::vector<SpotPrice> out;
  for (auto& [zone, p] : newest) out.push_back(p);
  return out;
}

}  // namespace yard::aws
