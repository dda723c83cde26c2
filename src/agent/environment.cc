#include "agent/environment.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/command_runner.h"
#include "common/hashing.h"

namespace yard {

namespace fs = std::filesystem;

namespace {

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::vector<std::string> EnvList(const EnvMap& env) {
  std::vector<std::string> out;
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

std::string Tail(const std::string& s, size_t n) {
  return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

// Holds an exclusive flock on `path` while alive.
class FileLock {
 public:
  explicit FileLock(const std::string& path) : fd_(::open(path.c_str(), O_CREAT | O_RDWR, 0644)) {
    if (fd_ >= 0) ::flock(fd_, LOCK_EX);
  }
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_;
};

}  // namespace

std::string NormalizeRequirements(const std::string& text) {
  std::istringstream in(text);
  std::string out;
  for (std::string line; std::getline(in, line);) {
    size_t hash = line.find('#');
    if (hash != std::string::npos) line = line.substr(0, hash);
    line = Trim(line);
    if (!line.empty()) out += line + "\n";
  }
  return out;
}

std::string EnvironmentKey(const std::string& manifest_text, const std::string& python) {
  return Sha256Hex("yard-env-v1\n" + Trim(python) + "\n" + NormalizeRequirements(manifest_text));
}

StatusOr<PreparedEnvironment> PrepareEnvironment(const std::string& agent_work_dir,
                                                 const std::string& job_work, const EnvMap& env) {
  PreparedEnvironment result;
  fs::path manifest = fs::path(job_work) / "requirements.txt";
  if (!fs::is_regular_file(manifest)) return result;
  auto start = std::chrono::steady_clock::now();
  std::ifstream f(manifest, std::ios::binary);
  std::stringstream text;
  text << f.rdbuf();
  ProcessCommandRunner runner;
  CommandSpec version;
  version.argv = {"python3", "--version"};
  version.env = EnvList(env);
  YARD_ASSIGN_OR_RETURN(CommandResult v, runner.Run(version));
  if (!v.ok()) return FailedPrecondition("python3 --version failed: " + v.Reason());
  std::string key = EnvironmentKey(text.str(), v.out + v.err);
  fs::path envs = fs::absolute(fs::path(agent_work_dir) / "envs");
  std::error_code ec;
  fs::create_directories(envs, ec);
  if (ec) return Internal("creating " + envs.string() + ": " + ec.message());
  fs::path venv = envs / key;
  FileLock lock((envs / (key + ".lock")).string());  // one build per key at a time
  if (!lock.ok()) return Internal("cannot lock " + venv.string() + ".lock");
  result.venv = venv.string();
  if (fs::exists(venv / ".yard-ready")) {
    result.reused = true;
  } else {
    fs::remove_all(venv, ec);  // a build that died half-way
    CommandSpec mk;
    mk.argv = {"python3", "-m", "venv", "--system-site-packages", venv.string()};
    mk.env = EnvList(env);
    mk.timeout = std::chrono::minutes(5);
    YARD_ASSIGN_OR_RETURN(CommandResult made, runner.Run(mk));
    if (!made.ok()) {
      fs::remove_all(venv, ec);
      return FailedPrecondition("python3 -m venv failed:\n" + Tail(made.out + made.err, 4000));
    }
    CommandSpec pip;
    pip.argv = {(venv / "bin" / "python").string(), "-m", "pip", "install",
                "--disable-pip-version-check", "-r", manifest.string()};
    pip.env = EnvList(env);
    pip.timeout = std::chrono::minutes(30);
    YARD_ASSIGN_OR_RETURN(CommandResult installed, runner.Run(pip));
    if (!installed.ok()) {
      fs::remove_all(venv, ec);
      return FailedPrecondition("pip install -r requirements.txt failed:\n" +
                                Tail(installed.out + installed.err, 4000));
    }
    std::ofstream((venv / ".yard-ready").string()) << key << "\n";
  }
  result.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

void ActivateEnvironment(const std::string& venv, EnvMap* env) {
  if (venv.empty()) return;
  std::string& path = (*env)["PATH"];
  path = venv + "/bin" + (path.empty() ? ":/usr/local/bin:/usr/bin:/bin" : ":" + path);
  (*env)["VIRTUAL_ENV"] = venv;
  env->erase("PYTHONHOME");
}

}  // namespace yard
