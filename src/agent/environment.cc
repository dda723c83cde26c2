#include "agent/environment.h"

#include <fcntl.h>
#include <unistd.h>

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/command_runner.h"
#include "common/file_lock.h"
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

StatusOr<std::string> ReadText(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Internal("cannot read " + path.string());
  std::stringstream text;
  text << f.rdbuf();
  return text.str();
}

std::string Join(const std::vector<std::string>& lines, const std::string& sep) {
  std::string out;
  for (const auto& l : lines) out += (out.empty() ? "" : sep) + l;
  return out;
}

// ------------------------------------------------------------ conda specs

bool IsOperatorStart(char c) { return c == '=' || c == '<' || c == '>' || c == '!' || c == '~'; }

// Conda's `1.24*` is pip's `1.24.*`.
std::string StarToPip(std::string v) {
  if (v.size() >= 1 && v.back() == '*' && (v.size() < 2 || v[v.size() - 2] != '.'))
    v.insert(v.size() - 1, ".");
  return v;
}

// A conda version (after the name) as a pip specifier, "" if pip has none;
// *build receives a build string conda would match and pip cannot.
std::string CondaVersionToPip(std::string rest, std::string* build) {
  if (!IsOperatorStart(rest[0])) {  // space form: `1.24.*` or `1.24 py311_0`
    std::istringstream words(rest);
    std::string version;
    words >> version >> *build;
    if (version.empty()) return "";
    if (IsOperatorStart(version[0])) return CondaVersionToPip(version, build);
    return "==" + StarToPip(version);
  }
  rest.erase(std::remove_if(rest.begin(), rest.end(), ::isspace), rest.end());
  if (rest[0] == '=' && (rest.size() < 2 || rest[1] != '=')) {  // `=1.24[=build]`: fuzzy
    std::string version = rest.substr(1);
    size_t eq = version.find('=');
    if (eq != std::string::npos) {
      *build = version.substr(eq + 1);
      version = version.substr(0, eq);
    }
    if (version.empty()) return "";
    return "==" + StarToPip(version.back() == '*' ? version : version + ".*");
  }
  std::string out;  // `>=1.2,<2`, `==1.2*`: pip's own operators
  std::stringstream parts(rest);
  for (std::string part; std::getline(parts, part, ',');)
    out += (out.empty() ? "" : ",") + StarToPip(part);
  return out;
}

bool ValidPipVersionSpec(const std::string& v) {
  return std::all_of(v.begin(), v.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view(".*+!,<>=~_-").find(c) != std::string_view::npos;
  });
}

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

std::string CondaSpecToPip(const std::string& spec, std::string* note) {
  std::string s = Trim(spec);
  size_t channel = s.rfind("::");
  if (channel != std::string::npos) s = s.substr(channel + 2);
  if (s.find_first_of("[|()@") != std::string::npos) {
    *note = "conda match syntax pip has no equivalent for";
    return "";
  }
  size_t name_end =
      s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-");
  std::string name = s.substr(0, name_end);
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  if (name.empty() || !std::isalnum(static_cast<unsigned char>(name[0]))) {
    *note = name.rfind("__", 0) == 0 ? "a conda virtual package" : "not a package name";
    return "";
  }
  if (lower == "python") {
    *note = "the job runs on the instance's python3";
    return "";
  }
  if (lower == "pip") {
    *note = "the venv brings its own pip";
    return "";
  }
  std::string rest = name_end == std::string::npos ? "" : Trim(s.substr(name_end));
  if (rest.empty()) return name;
  std::string build;
  std::string version = CondaVersionToPip(rest, &build);
  if (version.empty() || !ValidPipVersionSpec(version)) {
    *note = "a version pip cannot read";
    return "";
  }
  if (!build.empty()) *note = "build string '" + build + "' dropped: pip has none";
  return name + version;
}

StatusOr<CondaRequirements> ParseEnvironmentYml(const std::string& text) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return InvalidArgument(e.what());
  }
  CondaRequirements out;
  if (root.IsNull()) return out;
  if (!root.IsMap())
    return InvalidArgument("the top level must be a mapping (name, channels, dependencies)");
  YAML::Node deps = root["dependencies"];
  if (!deps || deps.IsNull()) return out;
  if (!deps.IsSequence())
    return InvalidArgument("line " + std::to_string(deps.Mark().line + 1) +
                           ": dependencies must be a list");
  for (const YAML::Node& item : deps) {
    if (item.IsScalar()) {
      std::string entry = item.as<std::string>(), note;
      std::string line = CondaSpecToPip(entry, &note);
      if (!line.empty()) out.conda.push_back(line);
      if (line.empty())
        out.notes.push_back("skipped " + entry + " (" + note + ")");
      else if (!note.empty())
        out.notes.push_back(entry + " installed as " + line + " (" + note + ")");
    } else if (item.IsMap() && item["pip"]) {
      YAML::Node pip = item["pip"];
      if (!pip.IsSequence())
        return InvalidArgument("line " + std::to_string(pip.Mark().line + 1) +
                               ": pip must be a list of requirements");
      for (const YAML::Node& req : pip) {
        if (!req.IsScalar())
          return InvalidArgument("line " + std::to_string(req.Mark().line + 1) +
                                 ": a pip requirement must be a string");
        out.pip.push_back(Trim(req.as<std::string>()));
      }
    } else {
      return InvalidArgument("line " + std::to_string(item.Mark().line + 1) +
                             ": a dependency must be a conda spec or a `pip:` list");
    }
  }
  return out;
}

StatusOr<EnvironmentManifest> ReadEnvironmentManifest(const std::string& job_work) {
  EnvironmentManifest m;
  fs::path dir(job_work);
  std::string yml;
  for (const char* name : {"environment.yml", "environment.yaml"})
    if (yml.empty() && fs::is_regular_file(dir / name)) yml = name;
  if (fs::is_regular_file(dir / "requirements.txt")) {
    YARD_ASSIGN_OR_RETURN(std::string text, ReadText(dir / "requirements.txt"));
    m.source = "requirements.txt";
    m.requirements = NormalizeRequirements(text);
    if (!yml.empty()) m.notes.push_back(yml + " ignored: requirements.txt wins when both exist");
    return m;
  }
  if (yml.empty()) return m;
  YARD_ASSIGN_OR_RETURN(std::string text, ReadText(dir / yml));
  StatusOr<CondaRequirements> parsed = ParseEnvironmentYml(text);
  if (!parsed.ok()) return InvalidArgument(yml + ": " + parsed.status().message());
  m.source = yml;
  std::set<std::string> seen;
  for (const auto* list : {&parsed->conda, &parsed->pip})
    for (const auto& line : *list)
      if (seen.insert(line).second) m.requirements += NormalizeRequirements(line);
  m.optional = parsed->conda;
  for (const auto& note : parsed->notes) m.notes.push_back(yml + ": " + note);
  return m;
}

namespace {

// Runs `argv` with cwd `dir`: pip resolves `-e .` and paths against it.
CommandSpec InDir(const std::string& dir, std::vector<std::string> argv, const EnvMap& env,
                  std::chrono::milliseconds timeout) {
  CommandSpec spec;
  spec.argv = {"sh", "-c", "cd \"$1\" && shift && exec \"$@\"", "sh", dir};
  spec.argv.insert(spec.argv.end(), argv.begin(), argv.end());
  spec.env = EnvList(env);
  spec.timeout = timeout;
  return spec;
}

// Which of `optional` pip cannot download (each with pip's last error line).
std::vector<std::string> Unservable(CommandRunner& runner, const fs::path& venv,
                                    const std::vector<std::string>& optional,
                                    const std::string& job_work, const EnvMap& env) {
  std::vector<std::string> out;
  std::error_code ec;
  fs::path probe = venv / ".yard-probe";
  for (const auto& line : optional) {
    StatusOr<CommandResult> r =
        runner.Run(InDir(job_work,
                         {(venv / "bin" / "python").string(), "-m", "pip", "download", "--no-deps",
                          "--disable-pip-version-check", "-q", "-d", probe.string(), line},
                         env, std::chrono::minutes(10)));
    if (r.ok() && !r->ok()) out.push_back(line + ": pip cannot serve it (" + r->Reason() + ")");
  }
  fs::remove_all(probe, ec);
  return out;
}

// Where pip reads the requirements from: requirements.txt itself, or for
// environment.yml the resolved lines written beside it (`lines`), so that a
// nested `-r file` resolves against the job's folder either way.
constexpr const char* kResolvedFile = ".yard-environment.txt";

StatusOr<CommandResult> PipInstall(CommandRunner& runner, const fs::path& venv,
                                   const EnvironmentManifest& m, const std::string& lines,
                                   const std::string& job_work, const EnvMap& env) {
  fs::path file = fs::path(job_work) / m.source;
  if (m.source != "requirements.txt") {
    file = fs::path(job_work) / kResolvedFile;
    std::ofstream(file, std::ios::binary | std::ios::trunc) << lines;
  }
  return runner.Run(InDir(job_work,
                          {(venv / "bin" / "python").string(), "-m", "pip", "install",
                           "--disable-pip-version-check", "-r", file.string()},
                          env, std::chrono::minutes(30)));
}

// `requirements` minus the lines `skipped` (as Unservable reports them) names.
std::string Without(const std::string& requirements, const std::vector<std::string>& skipped) {
  std::string lines;
  std::istringstream in(requirements);
  for (std::string line; std::getline(in, line);) {
    bool skip = std::any_of(skipped.begin(), skipped.end(),
                            [&](const std::string& s) { return s.rfind(line + ": ", 0) == 0; });
    if (!skip) lines += line + "\n";
  }
  return lines;
}

// Creates `venv` and installs `m` into it; on failure removes it again.
Status BuildVenv(CommandRunner& runner, const fs::path& venv, const EnvironmentManifest& m,
                 const std::string& job_work, const EnvMap& env,
                 std::vector<std::string>* skipped) {
  std::error_code ec;
  fs::remove_all(venv, ec);  // a build that died half-way
  YARD_ASSIGN_OR_RETURN(
      CommandResult made,
      runner.Run(InDir(job_work, {"python3", "-m", "venv", "--system-site-packages", venv.string()},
                       env, std::chrono::minutes(5))));
  if (!made.ok()) {
    fs::remove_all(venv, ec);
    return FailedPrecondition("python3 -m venv failed:\n" + Tail(made.out + made.err, 4000));
  }
  StatusOr<CommandResult> installed = PipInstall(runner, venv, m, m.requirements, job_work, env);
  if (installed.ok() && !installed->ok() && !m.optional.empty()) {
    // Converted conda entries pip cannot serve are skipped, then try again.
    *skipped = Unservable(runner, venv, m.optional, job_work, env);
    if (!skipped->empty())
      installed = PipInstall(runner, venv, m, Without(m.requirements, *skipped), job_work, env);
  }
  if (!installed.ok() || !installed->ok()) {
    fs::remove_all(venv, ec);
    if (!installed.ok()) return installed.status();
    std::string what =
        m.source == "requirements.txt" ? "-r requirements.txt" : "(from " + m.source + ")";
    return FailedPrecondition("pip install " + what + " failed:\n" +
                              Tail(installed->out + installed->err, 4000));
  }
  std::ofstream(venv / ".yard-skipped", std::ios::binary) << Join(*skipped, "\n");
  return Status::Ok();
}

}  // namespace

StatusOr<PreparedEnvironment> PrepareEnvironment(CommandRunner* runner,
                                                 const std::string& agent_work_dir,
                                                 const std::string& job_work,
                                                 const EnvironmentManifest& manifest,
                                                 const EnvMap& env) {
  PreparedEnvironment result;
  if (manifest.requirements.empty()) return result;
  auto start = std::chrono::steady_clock::now();
  CommandSpec version;
  version.argv = {"python3", "--version"};
  version.env = EnvList(env);
  YARD_ASSIGN_OR_RETURN(CommandResult v, runner->Run(version));
  if (!v.ok()) return FailedPrecondition("python3 --version failed: " + v.Reason());
  std::string key = EnvironmentKey(manifest.requirements, v.out + v.err);
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
    StatusOr<std::string> skipped = ReadText(venv / ".yard-skipped");
    std::istringstream in(skipped.ok() ? *skipped : "");
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) result.skipped.push_back(line);
  } else {
    YARD_RETURN_IF_ERROR(BuildVenv(*runner, venv, manifest, job_work, env, &result.skipped));
    std::ofstream((venv / ".yard-ready").string()) << key << "\n";
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

void ActivateEnvironment(const std::string& venv, EnvMap* env) {
  if (venv.empty()) return;
  std::string& path = (*env)["PATH"];
  path = venv + "/bin" + (path.empty() ? ":/usr/local/bin:/usr/bin:/bin" : ":" + path);
  (*env)["VIRTUAL_ENV"] = venv;
  env->erase("PYTHONHOME");
}

Status SetUpJobEnvironment(CommandRunner* runner, const std::string& agent_work_dir,
                           const std::string& job_work, EnvMap* env,
                           const std::function<void(const std::string&)>& say) {
  YARD_ASSIGN_OR_RETURN(EnvironmentManifest manifest, ReadEnvironmentManifest(job_work));
  if (manifest.source.empty()) return Status::Ok();
  for (const auto& note : manifest.notes) say(note);
  if (manifest.requirements.empty()) {
    say("environment from " + manifest.source +
        ": nothing for pip to install; using python3 as is");
    return Status::Ok();
  }
  say("environment from " + manifest.source + ": preparing");
  YARD_ASSIGN_OR_RETURN(PreparedEnvironment prepared,
                        PrepareEnvironment(runner, agent_work_dir, job_work, manifest, *env));
  for (const auto& s : prepared.skipped) say(manifest.source + ": skipped " + s);
  char took[32];
  std::snprintf(took, sizeof took, "%.1f", prepared.seconds);
  say("environment " + prepared.venv.substr(prepared.venv.rfind('/') + 1, 12) +
      (prepared.reused ? " (cached)" : " (built)") + " ready in " + took + " s");
  ActivateEnvironment(prepared.venv, env);
  return Status::Ok();
}

}  // namespace yard
