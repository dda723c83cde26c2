#include "providers/ssh_tunnel.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "common/command_runner.h"
#include "common/files.h"
#include "common/process.h"
#include "providers/settings_json.h"

namespace yard {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kFirstDelay{500};
constexpr milliseconds kMaxDelay{30000};
constexpr auto kStableAfter =
    std::chrono::seconds(30);  // up this long: the next delay is the first
constexpr const char* kUpLine = "yard-tunnel-up";

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

SshTunnel::SshTunnel(SshRemote* remote, TunnelSpec spec)
    : remote_(remote), spec_(std::move(spec)) {}

SshTunnel::~SshTunnel() { Stop(); }

void SshTunnel::Start() {
  MutexLock lock(mu_);
  if (started_) return;
  started_ = true;
  agent_started_ = !spec_.start_agent;
  thread_ = std::thread([this] { Main(); });
}

void SshTunnel::Stop() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
    if (pid_ > 0) ::kill(pid_, SIGTERM);  // not reaped yet: still ours (RunOnce)
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

TunnelState SshTunnel::State() const {
  MutexLock lock(mu_);
  TunnelState s;
  s.up = up_since_.has_value();
  s.up_for_s = up_since_ ? SecondsSince(*up_since_) : 0;
  s.starts = starts_;
  s.agent_started = agent_started_;
  s.failure = failure_;
  return s;
}

double SshTunnel::CountedSilence(double silent_s) const {
  MutexLock lock(mu_);
  if (!up_since_) return 0;
  double window = static_cast<double>(spec_.alive_interval_s) * spec_.alive_count_max;
  return std::max(0.0, std::min(silent_s, SecondsSince(*up_since_)) - window);
}

pid_t SshTunnel::TunnelPid() const {
  MutexLock lock(mu_);
  return up_since_ ? pid_ : 0;
}

// ------------------------------------------------------------ scripts

std::vector<std::string> SshTunnel::TunnelArgv(const std::string& server_host,
                                               int server_port) const {
  std::string forward = "127.0.0.1:" + std::to_string(spec_.remote_port) + ":" + server_host + ":" +
                        std::to_string(server_port);
  std::vector<std::string> argv = remote_->Argv(
      spec_.host, {"-T", "-o", "ExitOnForwardFailure=yes", "-o",
                   "ServerAliveInterval=" + std::to_string(spec_.alive_interval_s), "-o",
                   "ServerAliveCountMax=" + std::to_string(spec_.alive_count_max), "-R", forward});
  argv.insert(argv.end(), {spec_.host.address, "sh -c " + ShellQuote(SessionScript())});
  if (!spec_.ssh_program.empty()) argv[0] = spec_.ssh_program;
  return argv;
}

std::string SshTunnel::SessionScript() const {
  // The pid of the sshd process serving this connection (the first sshd up
  // the parent chain) goes to tunnel.pid: ClearScript ends that session if
  // it outlives its client. `cat` keeps the session open until the
  // connection ends (its stdin is ssh's, which we hold open).
  return remote_->DirPrelude() + "I=\"$D/instances/\"" + ShellQuote(spec_.instance_id) +
         "\n"
         "mkdir -p \"$I\" || exit 1\n"
         "p=$$\n"
         "while [ \"$p\" -gt 1 ] && [ \"$(cat /proc/$p/comm 2>/dev/null)\" != sshd ]; do\n"
         "  set -- $(cat /proc/$p/stat 2>/dev/null) 0 0 0 1; p=$4\n"
         "done\n"
         "echo \"$p\" > \"$I/tunnel.pid\"\n"
         "echo " +
         std::string(kUpLine) +
         "\n"
         "exec cat > /dev/null\n";
}

std::string SshTunnel::ClearScript() const {
  return remote_->DirPrelude() + "F=\"$D/instances/\"" + ShellQuote(spec_.instance_id) +
         "/tunnel.pid\n"
         "P=$(cat \"$F\" 2>/dev/null) && [ \"$(cat /proc/$P/comm 2>/dev/null)\" = sshd ] && kill "
         "\"$P\"\n"
         "rm -f \"$F\"; true\n";
}

// ------------------------------------------------------------ the thread

void SshTunnel::Main() {
  Status s = WaitForSsh();
  if (s.ok() && spec_.start_agent) s = remote_->Install(spec_.host);
  if (!s.ok()) return Fail(s);
  milliseconds delay = kFirstDelay;
  for (;;) {
    Clock::time_point began = Clock::now();
    RunOnce();
    {
      MutexLock lock(mu_);
      if (stopping_ || !failure_.empty()) return;
    }
    if (Clock::now() - began >= kStableAfter) delay = kFirstDelay;
    Note("the tunnel ended; starting it again in " + std::to_string(delay.count()) + " ms");
    if (Pause(delay)) return;
    delay = std::min(delay * 2, kMaxDelay);
  }
}

Status SshTunnel::WaitForSsh() {
  Clock::time_point deadline =
      Clock::now() + milliseconds(static_cast<int64_t>(spec_.ready_timeout_s * 1000));
  for (;;) {
    StatusOr<CommandResult> r = remote_->Run(spec_.host, "true");
    if (r.ok() && r->ok()) return Status::Ok();
    Status last = r.ok() ? Unavailable(r->Reason()) : r.status();
    if (Clock::now() > deadline)
      return last.WithContext("the instance's sshd did not let us in within " +
                              std::to_string(static_cast<int>(spec_.ready_timeout_s)) + " s");
    if (Pause(milliseconds(1000))) return Cancelled("stopping");
  }
}

StatusOr<std::string> SshTunnel::ServerUrl() const {
  if (!spec_.server_url.empty()) return spec_.server_url;
  YARD_ASSIGN_OR_RETURN(std::string text, ReadFile(spec_.server_url_file));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.contains("url") || !j["url"].is_string())
    return Unavailable(spec_.server_url_file + " does not say the server's URL yet");
  return j["url"].get<std::string>();
}

StatusOr<std::pair<std::string, int>> SshTunnel::ServerAddress() const {
  YARD_ASSIGN_OR_RETURN(std::string url, ServerUrl());
  size_t start = url.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  size_t colon = url.find(':', start);
  size_t end = url.find('/', start);
  if (colon == std::string::npos || colon > end)
    return InvalidArgument("no port in the server URL " + url);
  int port = std::atoi(url.c_str() + colon + 1);
  if (port <= 0 || port > 65535) return InvalidArgument("no port in the server URL " + url);
  return std::make_pair(url.substr(start, colon - start), port);
}

void SshTunnel::RunOnce() {
  StatusOr<std::pair<std::string, int>> server = ServerAddress();
  if (!server.ok()) return Note("cannot open the tunnel: " + server.status().message());
  (void)remote_->Run(spec_.host, ClearScript());  // best effort: the start says the rest
  int out = -1, in = -1;
  StatusOr<pid_t> pid = Spawn(TunnelArgv(server->first, server->second), &out, &in);
  if (!pid.ok()) return Note("cannot start ssh: " + pid.status().message());
  std::string pending;
  char buf[512];
  for (;;) {
    ssize_t n = ::read(out, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pending.append(buf, static_cast<size_t>(n));
    for (size_t nl; (nl = pending.find('\n')) != std::string::npos; pending.erase(0, nl + 1))
      if (pending.compare(0, nl, kUpLine) == 0) OnUp();
  }
  ::close(out);
  siginfo_t info{};
  ::waitid(P_PID, static_cast<id_t>(*pid), &info, WEXITED | WNOWAIT);
  {
    MutexLock lock(mu_);
    pid_ = 0;  // from here Stop no longer signals it; then it is reaped
    up_since_.reset();
  }
  int status = 0;
  ::waitpid(*pid, &status, 0);
  ::close(in);
  Note("ssh exited (" +
       std::string(WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                       : "code " + std::to_string(WEXITSTATUS(status))) +
       ")");
}

void SshTunnel::OnUp() {
  bool start_agent = false;
  {
    MutexLock lock(mu_);
    up_since_ = Clock::now();
    start_agent = !agent_started_;
  }
  Note("the tunnel is up: 127.0.0.1:" + std::to_string(spec_.remote_port) + " on " +
       spec_.host.Name() + " reaches the server");
  if (!start_agent) return;
  // The forward carries the server's own protocol: TLS end to end when it speaks it.
  StatusOr<std::string> server = ServerUrl();
  std::string scheme = server.ok() && server->rfind("https://", 0) == 0 ? "https" : "http";
  StatusOr<RemoteAgent> agent =
      remote_->StartAgent(spec_.host, scheme + "://127.0.0.1:" + std::to_string(spec_.remote_port),
                          spec_.agent_token, spec_.instance_id, spec_.agent_env);
  if (!agent.ok()) return Fail(agent.status());
  MutexLock lock(mu_);
  agent_started_ = true;
}

void SshTunnel::Fail(const Status& s) {
  MutexLock lock(mu_);
  if (stopping_) return;
  failure_ = s.message();
  if (pid_ > 0) ::kill(pid_, SIGTERM);
  Note("giving up: " + failure_);
}

// ssh with its stdout on a pipe (read for the up line), its stdin on a
// pipe whose write end the caller holds until ssh ends (the remote `cat`
// must not see EOF), its stderr appended to the tunnel's log, in its own
// process group, with none of the server's descriptors.
StatusOr<pid_t> SshTunnel::Spawn(const std::vector<std::string>& argv_in, int* out_fd, int* in_fd) {
  std::vector<std::string> argv = argv_in;
  int out[2], in[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return Internal("pipe failed");
  if (::pipe2(in, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return Internal("pipe failed");
  }
  int log = ::open(spec_.log_path.empty() ? "/dev/null" : spec_.log_path.c_str(),
                   O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  ChildSpec child;
  child.argv = argv;
  child.fds = {{in[0], 0}, {out[1], 1}};
  if (log >= 0) child.fds.push_back({log, 2});
  child.close_other_fds = true;
  child.new_process_group = true;
  pid_t pid = -1;
  int rc;
  {
    MutexLock lock(mu_);
    rc = stopping_ ? ECANCELED : SpawnChild(child, &pid);
    if (rc == 0) {
      pid_ = pid;
      ++starts_;
    }
  }
  for (int fd : {in[0], out[1], log})
    if (fd >= 0) ::close(fd);
  if (rc != 0) {
    ::close(out[0]);
    ::close(in[1]);
    return Unavailable("cannot run " + argv[0] + ": " + std::strerror(rc));
  }
  *out_fd = out[0];
  *in_fd = in[1];
  return pid;
}

void SshTunnel::Note(const std::string& line) const {
  if (spec_.log_path.empty()) return;
  FILE* f = std::fopen(spec_.log_path.c_str(), "ae");
  if (!f) return;
  std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  std::fprintf(f, "%s yard tunnel: %s\n", stamp, line.c_str());
  std::fclose(f);
}

bool SshTunnel::Pause(milliseconds d) {
  MutexLock lock(mu_);
  return wake_.wait_for(lock.unique(), d, [this]() REQUIRES(mu_) { return stopping_; });
}

// ------------------------------------------------------------ AWS

StatusOr<TunnelSettings> TunnelSettings::FromJson(const nlohmann::json& j) {
  TunnelSettings s;
  if (j.is_null()) return s;
  SettingsReader r(j, "providers.aws.tunnel");
  s.user = r.String("user", s.user);
  s.key = r.String("key", "");
  s.port = static_cast<int>(r.Number("port", s.port));
  s.address = r.String("address", s.address);
  s.remote_port = static_cast<int>(r.Number("remote_port", s.remote_port));
  s.known_hosts = r.String("known_hosts", "");
  s.strict_host_key_checking = r.String("strict_host_key_checking", s.strict_host_key_checking);
  s.connect_timeout_s = r.Number("connect_timeout_s", s.connect_timeout_s);
  s.ready_timeout_s = r.Number("ready_timeout_s", s.ready_timeout_s);
  s.remote_dir = r.String("remote_dir", s.remote_dir);
  YARD_RETURN_IF_ERROR(r.Finish());
  if (s.address != "public" && s.address != "private")
    return InvalidArgument(
        "providers.aws.tunnel.address must be \"public\" or \"private\", not \"" + s.address +
        "\"");
  if (s.port <= 0 || s.port > 65535 || s.remote_port <= 0 || s.remote_port > 65535)
    return InvalidArgument("providers.aws.tunnel: port and remote_port must be in 1..65535");
  if (s.connect_timeout_s <= 0 || s.ready_timeout_s <= 0 || s.remote_dir.empty())
    return InvalidArgument(
        "providers.aws.tunnel: connect_timeout_s and ready_timeout_s must be > 0, "
        "remote_dir not empty");
  return s;
}

namespace {

SshSettings SshSettingsFor(const TunnelSettings& t) {
  SshSettings s;
  s.user = t.user;
  s.key = t.key;
  s.port = t.port;
  s.known_hosts = t.known_hosts;
  s.strict_host_key_checking = t.strict_host_key_checking;
  s.connect_timeout_s = t.connect_timeout_s;
  s.remote_dir = t.remote_dir;
  return s;
}

}  // namespace

AwsTunnels::AwsTunnels(TunnelSettings settings, std::string server_url, std::string server_url_file,
                       std::string log_dir)
    : settings_(std::move(settings)),
      server_url_(std::move(server_url)),
      server_url_file_(std::move(server_url_file)),
      log_dir_(std::move(log_dir)),
      remote_(SshSettingsFor(settings_), &runner_) {}

AwsTunnels::~AwsTunnels() {
  std::map<std::string, std::unique_ptr<SshTunnel>> all;
  std::vector<std::thread> closers;
  {
    MutexLock lock(mu_);
    all.swap(tunnels_);
    closers.swap(closers_);
  }
  all.clear();  // each Stop()s
  for (std::thread& t : closers) t.join();
}

void AwsTunnels::Open(const std::string& id, const std::string& private_ip,
                      const std::string& public_ip, const std::string& token, bool agent_runs,
                      const std::vector<std::string>& agent_env) {
  TunnelSpec spec;
  spec.host.address = settings_.address == "public" && !public_ip.empty() ? public_ip : private_ip;
  spec.host.port = settings_.port;
  spec.host.user = settings_.user;
  spec.host.key = settings_.key;
  spec.instance_id = id;
  spec.agent_token = token;
  spec.server_url = server_url_;
  spec.server_url_file = server_url_file_;
  spec.remote_port = settings_.remote_port;
  spec.ready_timeout_s = settings_.ready_timeout_s;
  spec.start_agent = !agent_runs;
  spec.agent_env = agent_env;
  if (!log_dir_.empty() && MakeDirs(log_dir_ + "/" + id).ok())
    spec.log_path = log_dir_ + "/" + id + "/tunnel.log";
  auto tunnel = std::make_unique<SshTunnel>(&remote_, spec);
  tunnel->Start();
  std::unique_ptr<SshTunnel> old;
  MutexLock lock(mu_);
  old = std::move(tunnels_[id]);
  tunnels_[id] = std::move(tunnel);
  hosts_[id] = spec.host.Name();
  if (old) Retire(std::move(old));
}

// Stopping waits for an ssh step in flight (up to its connect timeout): on a
// thread of its own, joined by the destructor (the tunnel uses remote_).
void AwsTunnels::Retire(std::unique_ptr<SshTunnel> t) {
  closers_.emplace_back([t = std::shared_ptr<SshTunnel>(std::move(t))]() mutable { t.reset(); });
}

void AwsTunnels::Close(const std::string& id) {
  MutexLock lock(mu_);
  auto it = tunnels_.find(id);
  if (it == tunnels_.end()) return;
  Retire(std::move(it->second));
  tunnels_.erase(it);
  hosts_.erase(id);
}

double AwsTunnels::CountedSilence(const std::string& id, double silent_s) const {
  MutexLock lock(mu_);
  auto it = tunnels_.find(id);
  return it == tunnels_.end() ? silent_s : it->second->CountedSilence(silent_s);
}

std::vector<Interruption> AwsTunnels::TakeFailures() {
  std::vector<Interruption> out;
  MutexLock lock(mu_);
  for (auto it = tunnels_.begin(); it != tunnels_.end();) {
    std::string why = it->second->State().failure;
    if (why.empty()) {
      ++it;
      continue;
    }
    out.push_back({it->first, "the SSH tunnel to " + hosts_[it->first] + " gave up: " + why});
    Retire(std::move(it->second));
    hosts_.erase(it->first);
    it = tunnels_.erase(it);
  }
  return out;
}

}  // namespace yard
