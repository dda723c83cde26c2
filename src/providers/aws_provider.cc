#include "providers/aws_provider.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "common/command_runner.h"
#include "common/files.h"
#include "common/hashing.h"
#include "providers/remote_agent.h"
#include "providers/settings_json.h"
#include "store/store.h"

namespace yard {

using Json = nlohmann::json;
using aws::Ec2ErrorKind;

namespace {

// Polls in a row an instance with a known EC2 id may be missing from the
// listing (EC2's eventual consistency) before it counts as gone.
constexpr int kMissingPolls = 3;

bool Ended(const std::string& state) {
  return state == "shutting-down" || state == "terminated" || state == "stopping" ||
         state == "stopped";
}

bool IsLoopbackUrl(const std::string& url) {
  size_t start = url.find("://");
  std::string host = url.substr(start == std::string::npos ? 0 : start + 3);
  host = host.substr(0, host.find_first_of(":/"));
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "[::1]";
}

// A readable reason for an EC2 error of a launch (RunInstances, DescribeImages),
// with what to do. (The client's message already names the call and EC2's code.)
std::string RunError(const Status& s, const aws::Ec2Error& e) {
  std::string out = s.message();
  if (!e.missing_action.empty())
    out += " (the IAM policy of these credentials lacks " + e.missing_action +
           "; docs/providers.md, \"Minimal IAM policy\", lists what Trainyard needs)";
  return out;
}

StatusOr<std::string> EnsureServerId(const std::string& home) {
  std::string path = home + "/server_id";
  StatusOr<std::string> text = ReadFile(path);
  if (text.ok()) {
    std::string id = *text;
    while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
    if (!id.empty()) return id;
  }
  std::string id = NewId("yard");
  YARD_RETURN_IF_ERROR(WriteFileAtomic(path, id + "\n", 0644));
  return id;
}

// Regions where AWS publishes the Deep Learning AMI's and Canonical's SSM
// parameters (the commercial regions with GPU instances).
const std::set<std::string>& KnownRegions() {
  static const std::set<std::string> kRegions = {
      "us-east-1",      "us-east-2",      "us-west-1",      "us-west-2",      "ca-central-1",
      "eu-west-1",      "eu-west-2",      "eu-west-3",      "eu-central-1",   "eu-north-1",
      "eu-south-1",     "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1",
      "ap-southeast-2", "ap-south-1",     "sa-east-1",      "me-south-1",     "af-south-1"};
  return kRegions;
}

}  // namespace

// ------------------------------------------------------------ settings

StatusOr<AwsSettings> AwsSettings::FromJson(const Json& j, const std::string& home) {
  SettingsReader r(j, "providers.aws");
  AwsSettings s;
  s.region = r.String("region", "");
  s.endpoint_url = r.String("endpoint_url", "");
  s.server_url = r.String("server_url", "");
  s.connect = r.String("connect", s.server_url.empty() ? "tunnel" : "direct");
  s.poll_interval_s = r.Number("poll_interval_s", 3);
  s.spot_price_refresh_s = r.Number("spot_price_refresh_s", 3600);
  StatusOr<TunnelSettings> tunnel = TunnelSettings::FromJson(r.Raw("tunnel"));
  if (!tunnel.ok()) return tunnel.status();
  s.tunnel = *tunnel;
  s.home = home;
  YARD_RETURN_IF_ERROR(r.Finish());
  if (s.region.empty())
    return InvalidArgument("providers.aws: \"region\" is required (e.g. \"us-east-1\")");
  if (s.connect != "direct" && s.connect != "tunnel")
    return InvalidArgument("providers.aws: \"connect\" must be \"direct\" or \"tunnel\", not \"" +
                           s.connect + "\"");
  if (s.poll_interval_s <= 0 || s.spot_price_refresh_s <= 0)
    return InvalidArgument("providers.aws: poll_interval_s and spot_price_refresh_s must be > 0");
  YARD_ASSIGN_OR_RETURN(s.server_id, EnsureServerId(home));
  return s;
}

StatusOr<AwsLaunchSpec> AwsLaunchSpec::ForType(const MachineType& type, const std::string& region) {
  SettingsReader r(type.options, "type '" + type.name + "' options");
  AwsLaunchSpec q;
  q.instance_type = r.String("instance_type", type.name);
  q.ami = r.String("ami", "");
  q.subnet_id = r.String("subnet_id", "");
  q.security_group_ids = r.Strings("security_group_ids");
  q.key_name = r.String("key_name", "");
  q.iam_instance_profile = r.String("iam_instance_profile", "");
  q.root_volume_gb = static_cast<int>(r.Number("root_volume_gb", 0));
  YARD_RETURN_IF_ERROR(r.Finish());
  if (q.root_volume_gb < 0)
    return InvalidArgument("type '" + type.name + "': options.root_volume_gb must be >= 0");
  if (q.ami.empty()) q.ami = DefaultAmi(region, type.gpus > 0);
  if (q.ami.empty())
    return InvalidArgument("type '" + type.name + "': no default image for region " + region +
                           ": set options.ami to an AMI id of that region");
  return q;
}

std::string DefaultAmi(const std::string& region, bool gpu) {
  if (!KnownRegions().count(region)) return "";
  return gpu ? "resolve:ssm:/aws/service/deeplearning/ami/x86_64/"
               "base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
             : "resolve:ssm:/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/"
               "ebs-gp2/ami-id";
}

// ------------------------------------------------------------ user-data

std::vector<std::string> Ec2AgentEnvironment(bool spot) {
  if (!spot) return {};
  return {"YARD_PREEMPTION_WATCH=imds"};
}

namespace {

// The user-data's lines exporting Ec2AgentEnvironment(spot).
std::string AgentExports(bool spot) {
  std::string out;
  for (const std::string& e : Ec2AgentEnvironment(spot)) {
    size_t eq = e.find('=');
    out += "export " + e.substr(0, eq) + "=" + ShellQuote(e.substr(eq + 1)) + "\n";
  }
  if (!out.empty()) out = "# spot: the agent polls IMDS for interruption notices\n" + out;
  return out;
}

}  // namespace

std::string DirectUserData(const DirectBootstrap& b) {
  return "#!/bin/bash\n"
         "# Trainyard instance " +
         b.instance_id +
         " (aws provider, connect \"direct\"): downloads\n"
         "# the agent from the server, checks its SHA-256 and starts it. Needs bash and\n"
         "# curl or python3.\n"
         "set -u\n"
         "SERVER=" +
         ShellQuote(b.server_url) +
         "\n"
         "INSTANCE=" +
         ShellQuote(b.instance_id) +
         "\n"
         "export YARD_AGENT_TOKEN=" +
         ShellQuote(b.agent_token) +
         "\n"
         "YARD_SHA256=" +
         ShellQuote(b.yard_sha256) +
         "\n"
         "SHIM_SHA256=" +
         ShellQuote(b.shim_sha256) + "\n" + AgentExports(b.spot) +
         (b.server_fingerprint.empty()
              ? ""
              : "# the server's TLS certificate, pinned by the download and the agent\n"
                "export YARD_SERVER_FINGERPRINT=" +
                    ShellQuote(b.server_fingerprint) + "\n") +
         R"BASH(DIR="${TRAINYARD_DIR:-/var/lib/trainyard}"
WORK="$DIR/instances/$INSTANCE"
mkdir -p "$DIR/bin" "$WORK" || exit 1
exec >>"$WORK/bootstrap.log" 2>&1
log() { echo "trainyard bootstrap: $(date -u +%H:%M:%S) $*"; }

download_pinned() {  # download_pinned URL DEST: HTTPS, the certificate checked by its fingerprint
  python3 - "$1" "$2" <<'PY'
import hashlib, http.client, os, shutil, ssl, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE  # the fingerprint below is the check
c = http.client.HTTPSConnection(u.hostname, u.port or 443, context=ctx, timeout=60)
c.connect()
got = hashlib.sha256(c.sock.getpeercert(True)).hexdigest().upper()
want = os.environ["YARD_SERVER_FINGERPRINT"].replace(":", "").upper()
if got != want:
    sys.exit("the server's certificate has fingerprint %s, not the pinned %s: refused" % (got, want))
c.request("GET", u.path, headers={"Authorization": "Bearer " + os.environ["YARD_AGENT_TOKEN"]})
r = c.getresponse()
if r.status != 200:
    sys.exit("HTTP %d" % r.status)
with open(sys.argv[2], "wb") as f:
    shutil.copyfileobj(r, f, 1 << 20)
PY
}

download() {  # download NAME DEST
  local url="$SERVER/v1/agent/binaries/$1"
  if [ -n "${YARD_SERVER_FINGERPRINT:-}" ]; then
    # curl cannot pin a certificate's fingerprint; python3 can.
    if command -v python3 >/dev/null 2>&1; then download_pinned "$url" "$2"; return; fi
    log "the server speaks TLS with a pinned certificate: python3 is needed to check it"
    exit 1
  fi
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --connect-timeout 10 -H "Authorization: Bearer $YARD_AGENT_TOKEN" -o "$2" "$url"
  elif command -v python3 >/dev/null 2>&1; then
    python3 - "$url" "$2" <<'PY'
import os, shutil, sys, urllib.request
req = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + os.environ["YARD_AGENT_TOKEN"]})
with urllib.request.urlopen(req, timeout=60) as r, open(sys.argv[2], "wb") as f:
    shutil.copyfileobj(r, f, 1 << 20)
PY
  else
    log "neither curl nor python3 is installed: cannot download the agent"
    exit 1
  fi
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"
  fi
}

install_binary() {  # install_binary NAME SHA256
  local part="$DIR/bin/$1.part"
  for attempt in $(seq 1 30); do
    if download "$1" "$part"; then
      local got
      got=$(sha256_of "$part")
      if [ "$got" = "$2" ]; then
        chmod 755 "$part" && mv -f "$part" "$DIR/bin/$1" && return 0
      fi
      log "$1: SHA-256 $got, expected $2 (attempt $attempt)"
    else
      log "$1: cannot download it from $SERVER (attempt $attempt)"
    fi
    sleep 2
  done
  log "giving up on $1"
  exit 1
}

log "downloading the agent from $SERVER"
install_binary yard "$YARD_SHA256"
if [ -n "$SHIM_SHA256" ]; then install_binary yard-shim "$SHIM_SHA256"; fi
log "starting the agent"
cd "$WORK" || exit 1
setsid nohup "$DIR/bin/yard" agent --server "$SERVER" --instance "$INSTANCE" --dir "$WORK" \
  )BASH" +
         RemoteAgentConfinementFlags("\"$DIR/instances\"") +
         R"BASH( >>"$WORK/agent.log" 2>&1 </dev/null &
log "agent started (pid $!)"
)BASH";
}

StatusOr<AgentBinaryHashes> HashAgentBinaries(const std::string& yard_binary) {
  AgentBinaryHashes h;
  YARD_ASSIGN_OR_RETURN(std::string yard, ReadFile(yard_binary));
  h.yard = Sha256Hex(yard);
  std::string shim_path = yard_binary.substr(0, yard_binary.rfind('/') + 1) + "yard-shim";
  if (::access(shim_path.c_str(), R_OK) == 0) {
    YARD_ASSIGN_OR_RETURN(std::string shim, ReadFile(shim_path));
    h.shim = Sha256Hex(shim);
  }
  return h;
}

// ------------------------------------------------------------ provider

AwsProvider::AwsProvider(AwsSettings settings, std::shared_ptr<aws::Ec2Api> ec2, bool start_worker,
                         std::unique_ptr<InstanceTunnels> tunnels)
    : settings_(std::move(settings)), ec2_(std::move(ec2)) {
  if (settings_.connect == "tunnel" && tunnels)
    tunnels_ = std::move(tunnels);
  else if (settings_.connect == "tunnel")
    tunnels_ = std::make_unique<AwsTunnels>(settings_.tunnel, settings_.server_url,
                                            settings_.home + "/server.json",
                                            settings_.home + "/instances");
  if (start_worker) worker_ = std::thread([this] { WorkerMain(); });
}

AwsProvider::~AwsProvider() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void AwsProvider::Post(std::function<void()> task) {
  {
    MutexLock lock(mu_);
    tasks_.push_back(std::move(task));
  }
  wake_.notify_all();
}

StatusOr<std::string> AwsProvider::ServerUrl(const AgentLaunchInfo& agent) const {
  std::string url = settings_.server_url.empty() ? agent.server_url : settings_.server_url;
  if (url.empty() && !agent.server_url_file.empty()) {
    YARD_ASSIGN_OR_RETURN(std::string text, ReadFile(agent.server_url_file));
    Json j = Json::parse(text, nullptr, false);
    if (!j.is_discarded() && j.contains("url") && j["url"].is_string()) url = j["url"];
  }
  if (url.empty())
    return Unavailable("the server's URL is not known yet: set providers.aws.server_url");
  if (!tunnels_ && IsLoopbackUrl(url) && !settings_.endpoint_url.empty() &&
      !IsLoopbackUrl(settings_.endpoint_url))
    return InvalidArgument("agents on EC2 cannot dial " + url +
                           " (a loopback address): set providers.aws.server_url to an address "
                           "the instances reach, or use connect \"tunnel\"");
  return url;
}

StatusOr<AgentBinaryHashes> AwsProvider::Hashes(const std::string& yard_binary) {
  MutexLock lock(hash_mu_);
  auto it = hashes_.find(yard_binary);
  if (it != hashes_.end()) return it->second;
  YARD_ASSIGN_OR_RETURN(AgentBinaryHashes h, HashAgentBinaries(yard_binary));
  return hashes_[yard_binary] = h;
}

Status AwsProvider::Launch(const MachineType& type, const AgentLaunchInfo& agent,
                           InstanceRecord* inst) {
  YARD_ASSIGN_OR_RETURN(AwsLaunchSpec spec, AwsLaunchSpec::ForType(type, settings_.region));
  YARD_ASSIGN_OR_RETURN(std::string url, ServerUrl(agent));
  bool spot = inst->info.value("market", type.default_market) == "spot";
  aws::RunInstanceRequest req;
  req.image_id = spec.ami;
  req.instance_type = spec.instance_type;
  req.spot = spot;
  req.subnet_id = spec.subnet_id;
  req.security_group_ids = spec.security_group_ids;
  req.key_name = spec.key_name;
  req.iam_instance_profile = spec.iam_instance_profile;
  req.root_volume_gb = spec.root_volume_gb;
  req.client_token = inst->id;  // a retried RunInstances never makes two
  req.tags = {{"trainyard:instance", inst->id},
              {"trainyard:server", settings_.server_id},
              {"trainyard:user", inst->user},
              {"Name", "trainyard-" + inst->id}};
  inst->info["ec2_region"] = settings_.region;
  inst->info["ec2_instance_type"] = spec.instance_type;
  {
    MutexLock lock(mu_);
    Entry& e = entries_[inst->id];
    e.instance_type = spec.instance_type;
    e.spot = spot;
    e.launching = true;
    e.agent_token = agent.agent_token;
    e.server_fingerprint = agent.server_fingerprint;
    if (spot && type.spot_price <= 0) spot_types_.insert(spec.instance_type);
  }
  std::string id = inst->id;
  Post([this, id, type = type.name, req, agent, url] { RunInstance(id, type, req, agent, url); });
  return Status::Ok();
}

void AwsProvider::RunInstance(const std::string& id, const std::string& type_name,
                              aws::RunInstanceRequest req, AgentLaunchInfo agent, std::string url) {
  {
    MutexLock lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end() || it->second.ending) {  // withdrawn before it was sent
      entries_.erase(id);
      return;
    }
  }
  if (req.root_volume_gb > 0) {
    bool fatal = false;
    StatusOr<std::string> root = RootDevice(type_name, req.image_id, &fatal);
    if (!root.ok()) {
      MutexLock lock(mu_);
      auto it = entries_.find(id);
      if (it != entries_.end() && !it->second.ending) Refuse(id, root.status().message(), fatal);
      entries_.erase(id);
      return;
    }
    req.root_device_name = *root;
  }
  if (!tunnels_) {  // direct: the user-data installs the agent (tunnel: SshTunnel does)
    // What /v1/agent/binaries serves: the portable build beside the server's yard.
    StatusOr<AgentBinaryHashes> hashes = Hashes(PortableYard(agent.yard_binary));
    if (!hashes.ok()) {
      MutexLock lock(mu_);
      Refuse(id, "cannot read the agent binary to offer it: " + hashes.status().message(), true);
      return;
    }
    req.user_data = DirectUserData({url, agent.agent_token, id, hashes->yard, hashes->shim,
                                    req.spot, agent.server_fingerprint});
  }
  aws::Ec2Error err;
  StatusOr<aws::Ec2Instance> got = ec2_->RunInstance(req, &err);
  std::vector<std::string> to_terminate;
  {
    MutexLock lock(mu_);
    auto it = entries_.find(id);
    if (!got.ok()) {
      bool fatal = err.kind == Ec2ErrorKind::kAuth || err.kind == Ec2ErrorKind::kBadRequest;
      if (it != entries_.end() && !it->second.ending)
        Refuse(id, RunError(got.status(), err), fatal);
      entries_.erase(id);
      return;
    }
    if (it == entries_.end()) {  // cannot happen (entries with launching set stay); be safe
      to_terminate.push_back(got->instance_id);
    } else {
      Entry& e = it->second;
      e.launching = false;
      e.ec2_id = got->instance_id;
      e.zone = got->availability_zone;
      e.private_ip = got->private_ip;
      e.public_ip = got->public_ip;
      if (e.ending)
        to_terminate.push_back(e.ec2_id);
      else {
        std::set<std::string> seen;
        Observe(*got, &seen, &to_terminate);  // "running" at once is a grant
      }
    }
  }
  if (!to_terminate.empty()) TerminateNow(to_terminate);
}

StatusOr<std::string> AwsProvider::RootDevice(const std::string& type_name, const std::string& ami,
                                              bool* fatal) {
  {
    MutexLock lock(mu_);
    auto it = root_devices_.find({settings_.region, ami});
    if (it != root_devices_.end()) return it->second;
  }
  std::string where = "type '" + type_name + "': options.root_volume_gb: ";
  std::string change =
      "set options.ami of type '" + type_name + "' to an AMI id of " + settings_.region;
  *fatal = true;
  if (ami.rfind("resolve:ssm:", 0) == 0) {
    // EC2 resolves the parameter only at launch: DescribeImages cannot be
    // asked. The documented defaults are Ubuntu images.
    if (ami == DefaultAmi(settings_.region, true) || ami == DefaultAmi(settings_.region, false))
      return std::string("/dev/sda1");
    return InvalidArgument(
        where + "the root device of image " + ami +
        " cannot be known before launch (EC2 resolves SSM parameters only then): " + change +
        " (the one the parameter names)");
  }
  aws::Ec2Error err;
  StatusOr<std::vector<aws::Ec2Image>> images = ec2_->DescribeImages({ami}, &err);
  if (!images.ok()) {
    *fatal = err.kind == Ec2ErrorKind::kAuth || err.kind == Ec2ErrorKind::kBadRequest;
    if (err.kind == Ec2ErrorKind::kBadRequest && err.code.rfind("InvalidAMIID.", 0) == 0)
      return InvalidArgument(where + "AMI " + ami + " is not in region " + settings_.region + " (" +
                             images.status().message() + "): " + change);
    return Status(images.status().code(), where + "finding the root device of AMI " + ami + ": " +
                                              RunError(images.status(), err));
  }
  for (const aws::Ec2Image& image : *images) {
    if (image.image_id != ami || image.root_device_name.empty()) continue;
    MutexLock lock(mu_);
    return root_devices_[{settings_.region, ami}] = image.root_device_name;
  }
  return InvalidArgument(where + "AMI " + ami + " is not in region " + settings_.region +
                         " (EC2 DescribeImages lists no such image): " + change);
}

void AwsProvider::Refuse(const std::string& id, const std::string& message, bool fatal) {
  LaunchOutcome o;
  o.instance_id = id;
  o.kind = fatal ? LaunchOutcome::Kind::kFatal : LaunchOutcome::Kind::kRefused;
  o.message = message;
  outcomes_.push_back(std::move(o));
}

void AwsProvider::TerminateNow(const std::vector<std::string>& ec2_ids) {
  aws::Ec2Error err;
  Status s = ec2_->TerminateInstances(ec2_ids, &err);
  MutexLock lock(mu_);
  if (!s.ok()) {  // the poll tries again: the entries stay, marked ending
    std::fprintf(stderr, "yard server: aws: TerminateInstances failed (retrying): %s\n",
                 s.message().c_str());
    return;
  }
  std::set<std::string> done(ec2_ids.begin(), ec2_ids.end());
  for (auto it = entries_.begin(); it != entries_.end();)
    it = (it->second.ending && done.count(it->second.ec2_id)) ? entries_.erase(it) : std::next(it);
}

Status AwsProvider::Terminate(const InstanceRecord& inst) {
  if (tunnels_) tunnels_->Close(inst.id);
  std::string ec2_id;
  {
    MutexLock lock(mu_);
    auto it = entries_.find(inst.id);
    if (it == entries_.end()) {
      ec2_id = inst.info.value("ec2_instance_id", "");
      if (ec2_id.empty()) return Status::Ok();  // never reached EC2
      Entry& e = entries_[inst.id];
      e.ec2_id = ec2_id;
      e.ending = true;
    } else {
      it->second.ending = true;
      ec2_id = it->second.ec2_id;  // "" while RunInstances is out: ended when it answers
    }
  }
  if (!ec2_id.empty()) Post([this, ec2_id] { TerminateNow({ec2_id}); });
  return Status::Ok();
}

bool AwsProvider::Adopt(const InstanceRecord& inst) {
  MutexLock lock(mu_);
  Entry& e = entries_[inst.id];
  e.ec2_id = inst.info.value("ec2_instance_id", "");
  e.instance_type = inst.info.value("ec2_instance_type", inst.machine_type);
  e.zone = inst.info.value("availability_zone", "");
  e.spot = inst.info.value("market", "") == "spot";
  e.granted = inst.state != instance_state::kRequested;
  e.adopted = true;
  if (e.spot) spot_types_.insert(e.instance_type);
  if (tunnels_ && e.granted)  // its agent runs: only the tunnel is made again
    tunnels_->Open(inst.id, inst.info.value("private_ip", ""), inst.info.value("public_ip", ""), "",
                   true, Ec2AgentEnvironment(e.spot));
  return true;
}

void AwsProvider::Tick(double now) {
  MutexLock lock(mu_);
  if (watching_) return;
  watching_ = true;
  wake_.notify_all();
}

std::vector<LaunchOutcome> AwsProvider::TakeLaunchOutcomes() {
  MutexLock lock(mu_);
  return std::exchange(outcomes_, {});
}

std::vector<Interruption> AwsProvider::TakeInterruptions() {
  std::vector<Interruption> out;
  if (tunnels_) out = tunnels_->TakeFailures();
  MutexLock lock(mu_);
  out.insert(out.end(), interrupted_.begin(), interrupted_.end());
  interrupted_.clear();
  return out;
}

nlohmann::json AwsProvider::KnownInfo(const InstanceRecord& inst) {
  MutexLock lock(mu_);
  nlohmann::json info = nlohmann::json::object();
  auto it = entries_.find(inst.id);
  if (it == entries_.end() || it->second.ec2_id.empty()) return info;
  const Entry& e = it->second;
  info["ec2_instance_id"] = e.ec2_id;
  if (!e.zone.empty()) info["availability_zone"] = e.zone;
  if (!e.private_ip.empty()) info["private_ip"] = e.private_ip;
  if (!e.public_ip.empty()) info["public_ip"] = e.public_ip;
  return info;
}

double AwsProvider::CountedSilence(const InstanceRecord& inst, double silent_s) {
  return tunnels_ ? tunnels_->CountedSilence(inst.id, silent_s) : silent_s;
}

std::optional<double> AwsProvider::SpotPricePerHour(const InstanceRecord& inst) {
  MutexLock lock(mu_);
  std::string type = inst.info.value("ec2_instance_type", inst.machine_type);
  auto it = spot_prices_.find({type, inst.info.value("availability_zone", "")});
  if (it != spot_prices_.end()) return it->second;
  std::optional<double> lowest;  // zone not known yet: the type's lowest
  for (auto p = spot_prices_.lower_bound({type, ""});
       p != spot_prices_.end() && p->first.first == type; ++p)
    if (!lowest || p->second < *lowest) lowest = p->second;
  return lowest;
}

// ------------------------------------------------------------ watching

void AwsProvider::Observe(const aws::Ec2Instance& ec2, std::set<std::string>* seen,
                          std::vector<std::string>* to_terminate) {
  auto tag = ec2.tags.find("trainyard:instance");
  std::string id = tag == ec2.tags.end() ? "" : tag->second;
  auto it = entries_.find(id);
  if (it == entries_.end()) {
    if (Ended(ec2.state)) return;  // ours once, ended
    std::fprintf(
        stderr,
        "yard server: aws: terminating EC2 instance %s (trainyard:instance %s, %s): tagged "
        "with this server's id %s but not one of its instances\n",
        ec2.instance_id.c_str(), id.empty() ? "-" : id.c_str(), ec2.state.c_str(),
        settings_.server_id.c_str());
    to_terminate->push_back(ec2.instance_id);
    return;
  }
  Entry& e = it->second;
  seen->insert(id);
  e.ec2_id = ec2.instance_id;
  e.missing = 0;
  e.adopted = false;
  if (!ec2.availability_zone.empty()) e.zone = ec2.availability_zone;
  if (!ec2.private_ip.empty()) e.private_ip = ec2.private_ip;
  if (!ec2.public_ip.empty()) e.public_ip = ec2.public_ip;
  std::string why = "EC2 instance " + ec2.instance_id + " is " + ec2.state +
                    (ec2.state_reason.empty() ? "" : " (" + ec2.state_reason + ")");
  if (e.ending) {
    if (Ended(ec2.state) && ec2.state != "stopping" && ec2.state != "stopped")
      entries_.erase(it);
    else
      to_terminate->push_back(ec2.instance_id);
  } else if (!e.granted && ec2.state == "running") {
    e.granted = true;
    LaunchOutcome o;
    o.instance_id = id;
    o.info = {{"ec2_instance_id", ec2.instance_id},
              {"availability_zone", e.zone},
              {"private_ip", ec2.private_ip},
              {"public_ip", ec2.public_ip}};
    outcomes_.push_back(std::move(o));
    if (tunnels_) {
      std::vector<std::string> env = Ec2AgentEnvironment(e.spot);
      if (!e.server_fingerprint.empty())
        env.push_back("YARD_SERVER_FINGERPRINT=" + e.server_fingerprint);
      tunnels_->Open(id, ec2.private_ip, ec2.public_ip, e.agent_token, false, env);
    }
  } else if (!e.granted && Ended(ec2.state)) {
    Refuse(id, why + " before it ran", false);
    entries_.erase(it);
  } else if (e.granted && Ended(ec2.state)) {
    interrupted_.push_back({id, why});
    entries_.erase(it);
  }
}

void AwsProvider::Unseen(const std::set<std::string>& seen) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = it->second;
    const std::string& id = it->first;
    bool gone = false;
    std::string why;
    if (seen.count(id) || e.launching || e.ending) {
    } else if (e.adopted && e.ec2_id.empty()) {
      gone = true;
      why = "no EC2 instance carries its tag (its launch never reached EC2 before the restart)";
    } else if (!e.ec2_id.empty() && ++e.missing >= kMissingPolls) {
      gone = true;
      why = "EC2 no longer lists instance " + e.ec2_id;
    }
    if (!gone) {
      ++it;
      continue;
    }
    if (e.granted || e.adopted)
      interrupted_.push_back({id, why});
    else
      Refuse(id, why, false);
    it = entries_.erase(it);
  }
}

void AwsProvider::PollOnce() {
  {
    MutexLock lock(mu_);
    if (!watching_) return;
  }
  aws::Ec2Error err;
  StatusOr<std::vector<aws::Ec2Instance>> listed =
      ec2_->DescribeInstances({}, {{"tag:trainyard:server", settings_.server_id}}, &err);
  std::vector<std::string> to_terminate;
  {
    MutexLock lock(mu_);
    if (!listed.ok()) {
      if (listed.status().message() != last_poll_error_)
        std::fprintf(stderr, "yard server: aws: DescribeInstances failed (retrying): %s\n",
                     listed.status().message().c_str());
      last_poll_error_ = listed.status().message();
    } else {
      last_poll_error_.clear();
      std::set<std::string> seen;
      for (const auto& i : *listed) Observe(i, &seen, &to_terminate);
      Unseen(seen);
    }
  }
  if (!to_terminate.empty()) TerminateNow(to_terminate);
  RefreshSpotPrices();
}

void AwsProvider::RefreshSpotPrices() {
  std::vector<std::string> due;
  auto now = std::chrono::steady_clock::now();
  {
    MutexLock lock(mu_);
    auto every = std::chrono::duration<double>(settings_.spot_price_refresh_s);
    for (const auto& t : spot_types_) {
      auto asked = spot_asked_.find(t);
      if (asked == spot_asked_.end() || now - asked->second >= every) due.push_back(t);
    }
    for (const auto& t : due) spot_asked_[t] = now;
  }
  for (const auto& type : due) {
    aws::Ec2Error err;
    StatusOr<std::vector<aws::SpotPrice>> prices = ec2_->DescribeSpotPriceHistory(type, &err);
    MutexLock lock(mu_);
    if (!prices.ok()) {
      std::fprintf(stderr, "yard server: aws: DescribeSpotPriceHistory %s failed: %s\n",
                   type.c_str(), prices.status().message().c_str());
      spot_asked_.erase(type);  // again at the next poll
      continue;
    }
    for (const auto& p : *prices) spot_prices_[{type, p.availability_zone}] = p.price_per_hour;
  }
}

void AwsProvider::RunTasks() {
  for (;;) {
    std::function<void()> task;
    {
      MutexLock lock(mu_);
      if (tasks_.empty()) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

void AwsProvider::WorkerMain() {
  auto interval = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(settings_.poll_interval_s));
  auto next_poll = std::chrono::steady_clock::now();
  MutexLock lock(mu_);
  while (!stop_) {
    if (!tasks_.empty()) {
      lock.Unlock();
      RunTasks();
      lock.Lock();
      continue;
    }
    if (watching_ && std::chrono::steady_clock::now() >= next_poll) {
      lock.Unlock();
      PollOnce();
      lock.Lock();
      next_poll = std::chrono::steady_clock::now() + interval;
      continue;
    }
    if (watching_)
      wake_.wait_until(lock.unique(), next_poll);
    else
      wake_.wait(lock.unique());
  }
}

}  // namespace yard
