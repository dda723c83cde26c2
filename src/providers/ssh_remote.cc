#include "providers/ssh_remote.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "common/files.h"
#include "common/hashing.h"
#include "providers/remote_agent.h"

namespace yard {

std::string FirstWord(const std::string& s) {
  size_t start = s.find_first_not_of(" \t\r\n");
  if (start == std::string::npos) return "";
  return s.substr(start, s.find_first_of(" \t\r\n", start) - start);
}

std::string SshHost::Name() const {
  return (user.empty() ? "" : user + "@") + address + ":" + std::to_string(port);
}

SshRemote::SshRemote(SshSettings settings, CommandRunner* runner)
    : settings_(std::move(settings)), runner_(runner) {}

std::string SshRemote::DirPrelude() const {
  return "D=" + ShellQuote(settings_.remote_dir) +
         "; case \"$D\" in /*) ;; *) D=\"$HOME/$D\" ;; esac\n";
}

std::vector<std::string> SshRemote::Argv(const SshHost& host,
                                         const std::vector<std::string>& options) const {
  std::vector<std::string> argv = {"ssh",
                                   "-o",
                                   "BatchMode=yes",
                                   "-o",
                                   "LogLevel=ERROR",
                                   "-o",
                                   "ConnectTimeout=" + std::to_string(static_cast<int>(std::max(
                                                           1.0, settings_.connect_timeout_s))),
                                   "-o",
                                   "StrictHostKeyChecking=" + settings_.strict_host_key_checking,
                                   "-p",
                                   std::to_string(host.port)};
  if (!settings_.known_hosts.empty())
    argv.insert(argv.end(), {"-o", "UserKnownHostsFile=" + settings_.known_hosts});
  if (!host.key.empty()) argv.insert(argv.end(), {"-i", host.key, "-o", "IdentitiesOnly=yes"});
  if (!host.user.empty()) argv.insert(argv.end(), {"-l", host.user});
  argv.insert(argv.end(), options.begin(), options.end());
  return argv;
}

StatusOr<CommandResult> SshRemote::Run(const SshHost& host, const std::string& script,
                                       const std::string& input) const {
  CommandSpec spec;
  spec.argv = Argv(host);
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

std::string SshRemote::LocalBinary() const {
  return settings_.yard_binary.empty() ? PortableYard() : settings_.yard_binary;
}

StatusOr<std::string> SshRemote::LocalBinaryHash() {
  MutexLock lock(hash_mu_);
  if (local_hash_.empty()) {
    YARD_ASSIGN_OR_RETURN(std::string bytes, ReadFile(LocalBinary()));
    local_hash_ = Sha256Hex(bytes);
  }
  return local_hash_;
}

Status SshRemote::Install(const SshHost& host) {
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
Status SshRemote::InstallFile(const SshHost& host, const std::string& local,
                              const std::string& name, const std::string& want) const {
  std::string prelude = DirPrelude();
  std::string remote = "\"$D/bin/" + name + "\"";
  YARD_ASSIGN_OR_RETURN(CommandResult probe,
                        Run(host, prelude + "if [ -x " + remote + " ]; then sha256sum " + remote +
                                      "; else echo none; fi"));
  if (!probe.ok()) return Unavailable("probing " + host.Name() + ": " + probe.Reason());
  if (FirstWord(probe.out) == want) return Status::Ok();
  YARD_ASSIGN_OR_RETURN(std::string bytes, ReadFile(local));
  std::string copy = prelude +
                     "mkdir -p \"$D/bin\" || exit 1\n"
                     "T=\"$D/bin/." +
                     name +
                     ".$$\"\n"
                     "cat > \"$T\" && [ \"$(sha256sum < \"$T\" | cut -d' ' -f1)\" = " +
                     want +
                     " ] && chmod 755 \"$T\" && "
                     "mv -f \"$T\" " +
                     remote +
                     " && exit 0\n"
                     "rm -f \"$T\"; echo \"the copy of " +
                     name + " did not arrive intact\" >&2; exit 1\n";
  YARD_ASSIGN_OR_RETURN(CommandResult r, Run(host, copy, bytes));
  if (!r.ok()) return Unavailable("copying " + name + " to " + host.Name() + ": " + r.Reason());
  return Status::Ok();
}

namespace {

// "export NAME='value'\n" for each "NAME=value" of `env`.
StatusOr<std::string> ExportLines(const std::vector<std::string>& env) {
  std::string out;
  for (const std::string& e : env) {
    size_t eq = e.find('=');
    std::string name = e.substr(0, eq);
    bool ok =
        eq != std::string::npos && !name.empty() &&
        !std::isdigit(static_cast<unsigned char>(name[0])) &&
        name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") ==
            std::string::npos;
    if (!ok) return InvalidArgument("not an environment variable for the agent: '" + e + "'");
    out += "export " + name + "=" + ShellQuote(e.substr(eq + 1)) + "\n";
  }
  return out;
}

}  // namespace

StatusOr<RemoteAgent> SshRemote::StartAgent(const SshHost& host, const std::string& url,
                                            const std::string& token, const std::string& id,
                                            const std::vector<std::string>& env) const {
  YARD_ASSIGN_OR_RETURN(std::string exports, ExportLines(env));
  std::string script = DirPrelude() + exports + "I=\"$D/instances/\"" + ShellQuote(id) +
                       "\n"
                       "mkdir -p \"$I\" || exit 1\n"
                       "IFS= read -r YARD_AGENT_TOKEN || exit 1\n"
                       "export YARD_AGENT_TOKEN\n"
                       "cd \"$I\" || exit 1\n"
                       "setsid \"$D/bin/yard\" agent --server " +
                       ShellQuote(url) + " --instance " + ShellQuote(id) + " --dir \"$I\" " +
                       RemoteAgentConfinementFlags("\"$D/instances\"") +
                       " </dev/null >>\"$I/agent.log\" 2>&1 &\n"
                       "echo \"$! $I\"\n";
  YARD_ASSIGN_OR_RETURN(CommandResult r, Run(host, script, token + "\n"));
  std::string pid = FirstWord(r.out);
  if (!r.ok() || pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos)
    return Unavailable("starting the agent on " + host.Name() + ": " + r.Reason());
  std::string line = r.out.substr(0, r.out.find('\n'));  // "PID DIR"
  return RemoteAgent{pid, line.substr(std::min(line.size(), pid.size() + 1))};
}

std::string SshRemote::TerminateScript(const std::string& instance_id, const std::string& pid,
                                       const std::string& dir) {
  // Only our agent: the pid is checked against its command line (instance
  // id). SIGTERM lets it end its job; SIGKILL after 10 s. Once it is gone,
  // its folder is emptied but for agent.log and spool/ (what an agent that
  // died could not send): job folders, chunk cache and environments served
  // only this instance. Only a folder under instances/ is touched. Then
  // the host's own `yard` reports what spool/ holds (SpoolReportLine), so
  // that the server can remove what it has (RemoveSpoolFilesScript).
  std::string p = "/proc/" + pid;
  std::string script = "if grep -q " + ShellQuote(instance_id) + " " + p +
                       "/cmdline 2>/dev/null; then\n"
                       "  kill -TERM " +
                       pid +
                       "\n"
                       "  i=0; while [ -d " +
                       p +
                       " ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\n"
                       "  if grep -q " +
                       ShellQuote(instance_id) + " " + p +
                       "/cmdline 2>/dev/null; then kill -KILL " + pid +
                       "; sleep 0.2; fi\n"
                       "fi\n";
  if (dir.find("/instances/") != std::string::npos) {
    std::string d = ShellQuote(dir);
    script += "if [ -d " + d + " ] && ! grep -q " + ShellQuote(instance_id) + " " + p +
              "/cmdline 2>/dev/null; then\n"
              "  find " +
              d +
              " -mindepth 1 -maxdepth 1 ! -name agent.log ! -name spool "
              "-exec rm -rf {} +\n"
              "  if [ -d " +
              d + "/spool ]; then " + ShellQuote(RemoteYardOf(dir)) + " agent --instance " +
              ShellQuote(instance_id) + " --dir " + d +
              " --spool-report || true; fi\n"
              "fi\n";
  }
  return script + "true";
}

std::string SshRemote::RemoteYardOf(const std::string& instance_dir) {
  std::filesystem::path d = std::filesystem::path(instance_dir).lexically_normal();
  if (d.filename().empty()) d = d.parent_path();  // a trailing slash
  return (d.parent_path().parent_path() / "bin" / "yard").string();
}

std::string SshRemote::RemoveSpoolFilesScript(const std::string& dir,
                                              const std::vector<std::string>& files) {
  std::string spool = ShellQuote(dir + "/spool");
  std::string script = "cd " + spool + " 2>/dev/null || exit 0\n";
  // Names as the report gave them: plain file names, never a path.
  for (const std::string& f : files)
    if (!f.empty() && f.find('/') == std::string::npos && f != "." && f != "..")
      script += "rm -f -- " + ShellQuote(f) + "\n";
  return script + "cd / && rmdir " + spool + " 2>/dev/null; true";
}

}  // namespace yard
