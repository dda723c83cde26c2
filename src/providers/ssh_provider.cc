#include "providers/ssh_provider.h"

#include "common/files.h"
#include "providers/catalog.h"
#include "providers/settings_json.h"

namespace yard {

using Json = nlohmann::json;

namespace {

// How long the worker watches a started agent for its registration; after
// that the controller's provisioning timeout has the last word.
constexpr auto kConfirmFor = std::chrono::seconds(120);
constexpr auto kWatchEvery = std::chrono::milliseconds(300);
// What an agent prints once registered (agent.cc, Register).
constexpr const char* kRegisteredLine = "yard agent: registered";

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1" || host == "[::1]";
}

std::string UrlHost(const std::string& url) {
  size_t start = url.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  if (start < url.size() && url[start] == '[')
    return url.substr(start, url.find(']', start) + 1 - start);
  return url.substr(start, url.find_first_of(":/", start) - start);
}

StatusOr<SshHost> ParseHost(const Json& j, const SshSettings& s, const std::string& where) {
  SshHost h;
  h.user = s.user;
  h.key = s.key;
  h.port = s.port;
  if (j.is_string()) {  // "user@address:port"
    std::string text = j.get<std::string>();
    size_t at = text.find('@');
    if (at != std::string::npos) h.user = text.substr(0, at);
    std::string rest = at == std::string::npos ? text : text.substr(at + 1);
    size_t colon = rest.rfind(':');
    h.address = rest.substr(0, colon);
    if (colon != std::string::npos) h.port = std::atoi(rest.c_str() + colon + 1);
  } else {
    SettingsReader r(j, where);
    h.address = r.String("address", "");
    h.port = static_cast<int>(r.Number("port", s.port));
    h.user = r.String("user", s.user);
    h.key = r.String("key", s.key);
    h.slots = static_cast<int>(r.Number("slots", 1));
    YARD_RETURN_IF_ERROR(r.Finish());
  }
  if (h.address.empty() || h.port <= 0 || h.port > 65535 || h.slots < 1)
    return InvalidArgument(where + ": a host needs an address, a port in 1..65535 and slots >= 1");
  return h;
}

}  // namespace

StatusOr<SshSettings> SshSettings::FromJson(const Json& j, const std::string& home) {
  SettingsReader r(j, "providers.ssh");
  SshSettings s;
  s.user = r.String("user", "");
  s.key = r.String("key", "");
  s.port = static_cast<int>(r.Number("port", 22));
  s.known_hosts = r.String("known_hosts", "");
  s.strict_host_key_checking = r.String("strict_host_key_checking", "accept-new");
  s.connect_timeout_s = r.Number("connect_timeout_s", 5);
  s.remote_dir = r.String("remote_dir", ".cache/trainyard");
  s.server_url = r.String("server_url", "");
  s.yard_binary = r.String("yard_binary", "");
  YARD_RETURN_IF_ERROR(r.Finish());
  if (s.connect_timeout_s <= 0)
    return InvalidArgument("providers.ssh.connect_timeout_s must be > 0");
  if (s.remote_dir.empty()) return InvalidArgument("providers.ssh.remote_dir must not be empty");
  return s;
}

StatusOr<std::map<std::string, std::vector<SshHost>>> SshHostsByType(const Catalog& catalog,
                                                                     const SshSettings& settings) {
  std::map<std::string, std::vector<SshHost>> out;
  for (const MachineType& t : catalog.types()) {
    if (t.provider != "ssh") continue;
    std::string where = "type '" + t.name + "' options";
    SettingsReader r(t.options, where);
    Json hosts = r.Raw("hosts");
    YARD_RETURN_IF_ERROR(r.Finish());
    if (!hosts.is_array() || hosts.empty())
      return InvalidArgument(where + ": \"hosts\" must be a non-empty list of hosts");
    for (size_t i = 0; i < hosts.size(); ++i) {
      YARD_ASSIGN_OR_RETURN(
          SshHost h, ParseHost(hosts[i], settings, where + ": hosts[" + std::to_string(i) + "]"));
      out[t.name].push_back(h);
    }
  }
  return out;
}

SshProvider::SshProvider(SshSettings settings, std::map<std::string, std::vector<SshHost>> hosts,
                         std::unique_ptr<CommandRunner> runner)
    : settings_(std::move(settings)),
      hosts_(std::move(hosts)),
      runner_(std::move(runner)),
      remote_(settings_, runner_.get()) {
  worker_ = std::thread([this] { WorkerMain(); });
}

SshProvider::~SshProvider() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  worker_.join();
}

StatusOr<std::string> SshProvider::ServerUrl(const AgentLaunchInfo& agent,
                                             const SshHost& host) const {
  std::string url = settings_.server_url.empty() ? agent.server_url : settings_.server_url;
  if (url.empty()) {
    YARD_ASSIGN_OR_RETURN(std::string text, ReadFile(agent.server_url_file));
    Json j = Json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.contains("url") || !j["url"].is_string())
      return Unavailable(agent.server_url_file + " does not say the server's URL yet");
    url = j["url"];
  }
  if (IsLoopback(UrlHost(url)) && !IsLoopback(host.address))
    return FailedPrecondition("the server listens on " + url + ", which " + host.Name() +
                              " cannot reach: run `yard server --host ADDRESS` on an address the "
                              "host reaches, or set providers.ssh.server_url");
  return url;
}

// ------------------------------------------------------------ launching

std::optional<SshHost> SshProvider::Reserve(const std::string& type,
                                            const std::string& instance_id) {
  auto it = hosts_.find(type);
  if (it == hosts_.end()) return std::nullopt;
  MutexLock lock(mu_);
  for (const SshHost& h : it->second) {
    int& used = used_[h.Name()];
    if (used >= h.slots) continue;
    ++used;
    agents_[instance_id] = Agent{h, "", "", false, std::chrono::steady_clock::now()};
    return h;
  }
  return std::nullopt;
}

void SshProvider::Release(const std::string& instance_id) {
  MutexLock lock(mu_);
  auto it = agents_.find(instance_id);
  if (it == agents_.end()) return;
  used_[it->second.host.Name()] -= 1;
  agents_.erase(it);
}

int SshProvider::Available(const MachineType& type) {
  auto it = hosts_.find(type.name);
  if (it == hosts_.end()) return 0;
  MutexLock lock(mu_);
  int free = 0;
  for (const SshHost& h : it->second) {
    auto u = used_.find(h.Name());
    free += std::max(0, h.slots - (u == used_.end() ? 0 : u->second));
  }
  return free;
}

Status SshProvider::Launch(const MachineType& type, const AgentLaunchInfo& agent,
                           InstanceRecord* inst) {
  std::optional<SshHost> host = Reserve(type.name, inst->id);
  if (!host) return ResourceExhausted("every host of " + type.name + " is in use");
  StatusOr<std::string> url = ServerUrl(agent, *host);
  Status s = url.status();
  if (s.ok()) s = remote_.Install(*host);
  StatusOr<RemoteAgent> started = s.ok() ? remote_.StartAgent(*host, *url, agent.agent_token,
                                                              inst->id, AgentTlsEnvironment(agent))
                                         : StatusOr<RemoteAgent>(s);
  if (!started.ok()) {
    Release(inst->id);
    return started.status();
  }
  inst->info.update({{"host", host->Name()},
                     {"address", host->address},
                     {"pid", started->pid},
                     {"dir", started->dir}});
  MutexLock lock(mu_);
  Agent& a = agents_[inst->id];
  a.pid = started->pid;
  a.dir = started->dir;
  a.started = std::chrono::steady_clock::now();
  wake_.notify_all();
  return Status::Ok();
}

// ------------------------------------------------------------ watching

bool SshProvider::Confirm(const std::string& instance_id) {
  Agent a;
  {
    MutexLock lock(mu_);
    auto it = agents_.find(instance_id);
    if (it == agents_.end() || it->second.confirmed || it->second.pid.empty()) return true;
    if (std::chrono::steady_clock::now() - it->second.started > kConfirmFor) {
      it->second.confirmed = true;  // the controller's provisioning timeout takes over
      return true;
    }
    a = it->second;
  }
  std::string log = ShellQuote(a.dir + "/agent.log");
  StatusOr<CommandResult> r =
      remote_.Run(a.host, "if grep -q '" + std::string(kRegisteredLine) + "' " + log +
                              " 2>/dev/null; then echo registered; "
                              "elif kill -0 " +
                              a.pid +
                              " 2>/dev/null; then echo starting; "
                              "else echo exited; tail -n 5 " +
                              log + " 2>/dev/null; fi");
  if (!r.ok()) return false;  // look again
  std::string verdict = FirstWord(r->out);
  MutexLock lock(mu_);
  auto it = agents_.find(instance_id);
  if (it == agents_.end()) return true;
  if (verdict == "registered") it->second.confirmed = true;
  if (verdict != "exited") return it->second.confirmed;
  std::string tail = r->out.substr(r->out.find('\n') + 1);
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
  it->second.confirmed = true;
  interrupted_.push_back({instance_id, "the agent on " + a.host.Name() +
                                           " exited before it registered" +
                                           (tail.empty() ? "" : ": " + tail)});
  return true;
}

void SshProvider::Post(std::function<void()> task) {
  MutexLock lock(mu_);
  tasks_.push_back(std::move(task));
  wake_.notify_all();
}

void SshProvider::WorkerMain() {
  MutexLock lock(mu_);
  for (;;) {
    wake_.wait_for(lock.unique(), kWatchEvery,
                   [this]() REQUIRES(mu_) { return stop_ || !tasks_.empty(); });
    if (!tasks_.empty()) {
      std::function<void()> task = std::move(tasks_.front());
      tasks_.pop_front();
      busy_ = true;
      lock.Unlock();
      task();
      lock.Lock();
      busy_ = false;
      wake_.notify_all();
      continue;
    }
    if (stop_) return;
    std::vector<std::string> watching;
    for (const auto& [id, a] : agents_)
      if (!a.confirmed && !a.pid.empty()) watching.push_back(id);
    lock.Unlock();
    for (const std::string& id : watching) Confirm(id);
    lock.Lock();
  }
}

void SshProvider::Drain() {
  MutexLock lock(mu_);
  wake_.wait(lock.unique(), [this]() REQUIRES(mu_) { return tasks_.empty() && !busy_; });
}

// ------------------------------------------------------------ the rest

Status SshProvider::Terminate(const InstanceRecord& inst) {
  std::optional<Agent> a;
  {
    MutexLock lock(mu_);
    auto it = agents_.find(inst.id);
    if (it != agents_.end()) a = it->second;
  }
  Release(inst.id);
  if (!a || a->pid.empty()) return Status::Ok();
  Post([this, host = a->host, id = inst.id, pid = a->pid, dir = a->dir] {
    EndOnHost(host, id, pid, dir);
  });
  return Status::Ok();
}

void SshProvider::EndOnHost(const SshHost& host, const std::string& instance_id,
                            const std::string& pid, const std::string& dir) {
  StatusOr<CommandResult> ended =
      remote_.Run(host, SshRemote::TerminateScript(instance_id, pid, dir));
  if (!ended.ok() || !delivered_) return;
  std::vector<std::string> done = DeliveredSpoolFiles(ended->out, delivered_);
  if (!done.empty() || ended->out.empty())
    (void)remote_.Run(host, SshRemote::RemoveSpoolFilesScript(dir, done));
}

std::vector<std::string> DeliveredSpoolFiles(const std::string& report,
                                             const SpoolDelivered& delivered) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < report.size()) {
    size_t end = report.find('\n', start);
    if (end == std::string::npos) end = report.size();
    Json j = Json::parse(report.substr(start, end - start), nullptr, /*allow_exceptions=*/false);
    start = end + 1;
    if (!j.is_object() || !j["file"].is_string() || !j["job"].is_string() ||
        !j["attempt"].is_number_integer() || !j["records"].is_number_integer())
      continue;  // not a report line (a shell's noise): nothing is removed for it
    int64_t held = delivered(j["job"].get<std::string>(), j["attempt"].get<int64_t>());
    if (held >= 0 && j["records"].get<int64_t>() <= held)
      out.push_back(j["file"].get<std::string>());
  }
  return out;
}

bool SshProvider::IsAlive(const InstanceRecord& inst) {
  MutexLock lock(mu_);
  return agents_.count(inst.id) > 0;  // a dead one stays until its interruption is taken
}

bool SshProvider::Adopt(const InstanceRecord& inst) {
  std::string name = inst.info.value("host", "");
  auto it = hosts_.find(inst.machine_type);
  if (it == hosts_.end()) return false;
  for (const SshHost& h : it->second) {
    if (h.Name() != name) continue;
    MutexLock lock(mu_);
    used_[name] += 1;
    agents_[inst.id] = Agent{h, inst.info.value("pid", ""), inst.info.value("dir", ""), true,
                             std::chrono::steady_clock::now()};
    return true;  // heartbeats tell whether its agent is still there
  }
  return false;
}

std::vector<Interruption> SshProvider::TakeInterruptions() {
  std::vector<Interruption> out;
  {
    MutexLock lock(mu_);
    out.swap(interrupted_);
  }
  for (const Interruption& i : out) Release(i.instance_id);
  return out;
}

}  // namespace yard
