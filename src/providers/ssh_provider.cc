#include "providers/ssh_provider.h"

#include <unistd.h>

#include "common/files.h"
#include "common/hashing.h"
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

// The remote folder as an absolute path in $D (relative = under $HOME).
std::string RemoteDirPrelude(const std::string& remote_dir) {
  return "D=" + ShellQuote(remote_dir) + "; case \"$D\" in /*) ;; *) D=\"$HOME/$D\" ;; esac\n";
}

std::string FirstWord(const std::string& s) {
  size_t start = s.find_first_not_of(" \t\r\n");
  if (start == std::string::npos) return "";
  return s.substr(start, s.find_first_of(" \t\r\n", start) - start);
}

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1" || host == "[::1]";
}

std::string UrlHost(const std::string& url) {
  size_t start = url.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  if (start < url.size() && url[start] == '[') return url.substr(start, url.find(']', start) + 1 - start);
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

std::string SshHost::Name() const {
  return (user.empty() ? "" : user + "@") + address + ":" + std::to_string(port);
}

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
  if (s.connect_timeout_s <= 0) return InvalidArgument("providers.ssh.connect_timeout_s must be > 0");
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
      YARD_ASSIGN_OR_RETURN(SshHost h, ParseHost(hosts[i], settings, where + ": hosts[" + std::to_string(i) + "]"));
      out[t.name].push_back(h);
    }
  }
  return out;
}

SshProvider::SshProvider(SshSettings settings, std::map<std::string, std::vector<SshHost>> hosts,
                         std::unique_ptr<CommandRunner> runner)
    : settings_(std::move(settings)), hosts_(std::move(hosts)), runner_(std::move(runner)) {
  worker_ = std::thread([this] { WorkerMain(); });
}

SshProvider::~SshProvider() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  worker_.join();
}

// ------------------------------------------------------------ ssh itself

StatusOr<CommandResult> SshProvider::Ssh(const SshHost& host, const std::string& script,
                                         const std::string& input) {
  CommandSpec spec;
  spec.argv = {"ssh", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
               "-o", "ConnectTimeout=" + std::to_string(static_cast<int>(std::max(1.0, settings_.connect_timeout_s))),
               "-o", "StrictHostKeyChecking=" + settings_.strict_host_key_checking,
               "-p", std::to_string(host.port)};
  if (!settings_.known_hosts.empty())
    spec.argv.insert(spec.argv.end(), {"-o", "UserKnownHostsFile=" + settings_.known_hosts});
  if (!host.key.empty()) spec.argv.insert(spec.argv.end(), {"-i", host.key, "-o", "IdentitiesOnly=yes"});
  if (!host.user.empty()) spec.argv.insert(spec.argv.end(), {"-l", host.user});
  // One argument, run by POSIX sh whatever the remote login shell is.
  spec.argv.insert(spec.argv.end(), {host.address, "sh -c " + ShellQuote(script)});
  spec.input = input;
  spec.timeout = std::chrono::seconds(static_cast<int>(settings_.connect_timeout_s) + 120);
  StatusOr<CommandResult> r = runner_->Run(spec);
  if (!r.ok()) return r.status().WithContext("ssh " + host.Name());
  // 255 is ssh's own failure (unreachable, refused, authentication).
  if (r->exit_code == 255) return Unavailable("cannot reach " + host.Name() + ": " + r->Reason());
  return r;
}

std::string SshProvider::LocalBinary() const {
  return settings_.yard_binary.empty() ? PortableYard() : settings_.yard_binary;
}

StatusOr<std::string> SshProvider::LocalBinaryHash() {
  std::lock_guard<std::mutex> lock(hash_mu_);
  if (local_hash_.empty()) {
    YARD_ASSIGN_OR_RETURN(std::string bytes, ReadFile(LocalBinary()));
    local_hash_ = Sha256Hex(bytes);
  }
  return local_hash_;
}

StatusOr<std::string> SshProvider::ServerUrl(const AgentLaunchInfo& agent, const SshHost& host) const {
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

std::optional<SshHost> SshProvider::Reserve(const std::string& type, const std::string& instance_id) {
  auto it = hosts_.find(type);
  if (it == hosts_.end()) return std::nullopt;
  std::lock_guard<std::mutex> lock(mu_);
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
  std::lock_guard<std::mutex> lock(mu_);
  auto it = agents_.find(instance_id);
  if (it == agents_.end()) return;
  used_[it->second.host.Name()] -= 1;
  agents_.erase(it);
}

int SshProvider::Available(const MachineType& type) {
  auto it = hosts_.find(type.name);
  if (it == hosts_.end()) return 0;
  std::lock_guard<std::mutex> lock(mu_);
  int free = 0;
  for (const SshHost& h : it->second) {
    auto u = used_.find(h.Name());
    free += std::max(0, h.slots - (u == used_.end() ? 0 : u->second));
  }
  return free;
}

Status SshProvider::Install(const SshHost& host) {
  YARD_ASSIGN_OR_RETURN(std::string want, LocalBinaryHash());
  std::string yard = LocalBinary();
  YARD_RETURN_IF_ERROR(InstallFile(host, yard, "yard", want));
  // The small per-job shim (src/shim) goes beside it when it was built
  // beside this `yard`; without it the agent falls back to `yard shim`.
  std::string shim = yard.substr(0, yard.rfind('/') + 1) + "yard-shim";
  if (::access(shim.c_str(), X_OK) != 0) return Status::Ok();
  YARD_ASSIGN_OR_RETURN(std::string shim_bytes, ReadFile(shim));
  return InstallFile(host, shim, "yard-shim", Sha256Hex(shim_bytes));
}

// Copies `local` to <remote_dir>/bin/<name> unless the host has that exact
// file (same SHA-256) already.
Status SshProvider::InstallFile(const SshHost& host, const std::string& local,
                                const std::string& name, const std::string& want) {
  std::string prelude = RemoteDirPrelude(settings_.remote_dir);
  std::string remote = "\"$D/bin/" + name + "\"";
  YARD_ASSIGN_OR_RETURN(CommandResult probe,
                        Ssh(host, prelude + "if [ -x " + remote + " ]; then sha256sum " + remote +
                                      "; else echo none; fi"));
  if (!probe.ok()) return Unavailable("probing " + host.Name() + ": " + probe.Reason());
  if (FirstWord(probe.out) == want) return Status::Ok();
  YARD_ASSIGN_OR_RETURN(std::string bytes, ReadFile(local));
  std::string copy = prelude +
      "mkdir -p \"$D/bin\" || exit 1\n"
      "T=\"$D/bin/." + name + ".$$\"\n"
      "cat > \"$T\" && [ \"$(sha256sum < \"$T\" | cut -d' ' -f1)\" = " + want + " ] && chmod 755 \"$T\" && "
      "mv -f \"$T\" " + remote + " && exit 0\n"
      "rm -f \"$T\"; echo \"the copy of " + name + " did not arrive intact\" >&2; exit 1\n";
  YARD_ASSIGN_OR_RETURN(CommandResult r, Ssh(host, copy, bytes));
  if (!r.ok()) return Unavailable("copying " + name + " to " + host.Name() + ": " + r.Reason());
  return Status::Ok();
}

StatusOr<std::string> SshProvider::StartAgent(const SshHost& host, const std::string& url,
                                              const std::string& token, const std::string& id) {
  std::string script = RemoteDirPrelude(settings_.remote_dir) +
      "I=\"$D/instances/\"" + ShellQuote(id) + "\n"
      "mkdir -p \"$I\" || exit 1\n"
      "IFS= read -r YARD_AGENT_TOKEN || exit 1\n"
      "export YARD_AGENT_TOKEN\n"
      "cd \"$I\" || exit 1\n"
      "setsid \"$D/bin/yard\" agent --server " + ShellQuote(url) + " --instance " + ShellQuote(id) +
      " --dir \"$I\" </dev/null >>\"$I/agent.log\" 2>&1 &\n"
      "echo \"$! $I\"\n";
  YARD_ASSIGN_OR_RETURN(CommandResult r, Ssh(host, script, token + "\n"));
  std::string pid = FirstWord(r.out);
  if (!r.ok() || pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos)
    return Unavailable("starting the agent on " + host.Name() + ": " + r.Reason());
  return r.out.substr(0, r.out.find('\n'));  // "PID DIR"
}

Status SshProvider::Launch(const MachineType& type, const AgentLaunchInfo& agent,
                           InstanceRecord* inst) {
  std::optional<SshHost> host = Reserve(type.name, inst->id);
  if (!host) return ResourceExhausted("every host of " + type.name + " is in use");
  StatusOr<std::string> url = ServerUrl(agent, *host);
  Status s = url.status();
  if (s.ok()) s = Install(*host);
  StatusOr<std::string> started = s.ok() ? StartAgent(*host, *url, agent.agent_token, inst->id)
                                         : StatusOr<std::string>(s);
  if (!started.ok()) {
    Release(inst->id);
    return started.status();
  }
  std::string pid = FirstWord(*started), dir = started->substr(pid.size() + 1);
  inst->info.update({{"host", host->Name()}, {"address", host->address}, {"pid", pid}, {"dir", dir}});
  std::lock_guard<std::mutex> lock(mu_);
  Agent& a = agents_[inst->id];
  a.pid = pid;
  a.dir = dir;
  a.started = std::chrono::steady_clock::now();
  wake_.notify_all();
  return Status::Ok();
}

// ------------------------------------------------------------ watching

bool SshProvider::Confirm(const std::string& instance_id) {
  Agent a;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = agents_.find(instance_id);
    if (it == agents_.end() || it->second.confirmed || it->second.pid.empty()) return true;
    if (std::chrono::steady_clock::now() - it->second.started > kConfirmFor) {
      it->second.confirmed = true;  // the controller's provisioning timeout takes over
      return true;
    }
    a = it->second;
  }
  std::string log = ShellQuote(a.dir + "/agent.log");
  StatusOr<CommandResult> r = Ssh(a.host,
      "if grep -q '" + std::string(kRegisteredLine) + "' " + log + " 2>/dev/null; then echo registered; "
      "elif kill -0 " + a.pid + " 2>/dev/null; then echo starting; "
      "else echo exited; tail -n 5 " + log + " 2>/dev/null; fi");
  if (!r.ok()) return false;  // look again
  std::string verdict = FirstWord(r->out);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = agents_.find(instance_id);
  if (it == agents_.end()) return true;
  if (verdict == "registered") it->second.confirmed = true;
  if (verdict != "exited") return it->second.confirmed;
  std::string tail = r->out.substr(r->out.find('\n') + 1);
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
  it->second.confirmed = true;
  interrupted_.push_back({instance_id, "the agent on " + a.host.Name() + " exited before it registered" +
                                           (tail.empty() ? "" : ": " + tail)});
  return true;
}

void SshProvider::Post(std::function<void()> task) {
  std::lock_guard<std::mutex> lock(mu_);
  tasks_.push_back(std::move(task));
  wake_.notify_all();
}

void SshProvider::WorkerMain() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait_for(lock, kWatchEvery, [this] { return stop_ || !tasks_.empty(); });
    if (!tasks_.empty()) {
      std::function<void()> task = std::move(tasks_.front());
      tasks_.pop_front();
      busy_ = true;
      lock.unlock();
      task();
      lock.lock();
      busy_ = false;
      wake_.notify_all();
      continue;
    }
    if (stop_) return;
    std::vector<std::string> watching;
    for (const auto& [id, a] : agents_)
      if (!a.confirmed && !a.pid.empty()) watching.push_back(id);
    lock.unlock();
    for (const std::string& id : watching) Confirm(id);
    lock.lock();
  }
}

void SshProvider::Drain() {
  std::unique_lock<std::mutex> lock(mu_);
  wake_.wait(lock, [this] { return tasks_.empty() && !busy_; });
}

// ------------------------------------------------------------ the rest

Status SshProvider::Terminate(const InstanceRecord& inst) {
  std::optional<Agent> a;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = agents_.find(inst.id);
    if (it != agents_.end()) a = it->second;
  }
  Release(inst.id);
  if (!a || a->pid.empty()) return Status::Ok();
  Post([this, host = a->host, script = TerminateScript(inst.id, a->pid, a->dir)] {
    (void)Ssh(host, script);
  });
  return Status::Ok();
}

std::string SshProvider::TerminateScript(const std::string& instance_id, const std::string& pid,
                                         const std::string& dir) {
  // Only our agent: the pid is checked against its command line (instance
  // id). SIGTERM lets it end its job; SIGKILL after 10 s. Once it is gone,
  // its folder is emptied but for agent.log and spool/ (what an agent that
  // died could not send): job folders, chunk cache and environments served
  // only this instance. Only a folder under instances/ is touched.
  std::string p = "/proc/" + pid;
  std::string script =
      "if grep -q " + ShellQuote(instance_id) + " " + p + "/cmdline 2>/dev/null; then\n"
      "  kill -TERM " + pid + "\n"
      "  i=0; while [ -d " + p + " ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\n"
      "  if grep -q " + ShellQuote(instance_id) + " " + p + "/cmdline 2>/dev/null; then kill -KILL " +
      pid + "; sleep 0.2; fi\n"
      "fi\n";
  if (dir.find("/instances/") != std::string::npos) {
    std::string d = ShellQuote(dir);
    script += "if [ -d " + d + " ] && ! grep -q " + ShellQuote(instance_id) + " " + p +
              "/cmdline 2>/dev/null; then\n"
              "  find " + d + " -mindepth 1 -maxdepth 1 ! -name agent.log ! -name spool "
              "-exec rm -rf {} +\n"
              "fi\n";
  }
  return script + "true";
}

bool SshProvider::IsAlive(const InstanceRecord& inst) {
  std::lock_guard<std::mutex> lock(mu_);
  return agents_.count(inst.id) > 0;  // a dead one stays until its interruption is taken
}

bool SshProvider::Adopt(const InstanceRecord& inst) {
  std::string name = inst.info.value("host", "");
  auto it = hosts_.find(inst.machine_type);
  if (it == hosts_.end()) return false;
  for (const SshHost& h : it->second) {
    if (h.Name() != name) continue;
    std::lock_guard<std::mutex> lock(mu_);
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
    std::lock_guard<std::mutex> lock(mu_);
    out.swap(interrupted_);
  }
  for (const Interruption& i : out) Release(i.instance_id);
  return out;
}

}  // namespace yard
