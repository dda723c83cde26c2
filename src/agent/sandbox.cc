#include "agent/sandbox.h"

#include <glob.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/command_runner.h"

namespace yard {

namespace fs = std::filesystem;

namespace {

// Shown read-only as they are: a link (Debian's merged /usr: /bin -> usr/bin)
// stays a link, a folder is bound.
constexpr const char* kSystemPaths[] = {"/usr",   "/bin",    "/sbin", "/lib", "/lib32",
                                        "/lib64", "/libx32", "/etc",  "/opt", "/sys"};
// The host's secrets below /etc, replaced by an empty file or folder.
constexpr const char* kEtcSecrets[] = {"/etc/shadow",   "/etc/shadow-", "/etc/gshadow",
                                       "/etc/gshadow-", "/etc/ssh",     "/etc/munge"};

bool IsUnder(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

bool InSystem(const std::string& path) {
  for (const char* s : kSystemPaths)
    if (IsUnder(path, s)) return true;
  return false;
}

std::string Normal(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path, ec), ec);
  std::string s = (ec ? fs::path(path).lexically_normal() : p).string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

// Absolute and lexically normal, links kept (the path as the job names it).
std::string Literal(const std::string& path) {
  std::error_code ec;
  std::string s = fs::absolute(path, ec).lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

bool IsPythonInstallation(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir / "pyvenv.cfg", ec) || fs::is_directory(dir / "versions", ec)) return true;
  for (const auto& e : fs::directory_iterator(dir / "lib", ec))
    if (e.path().filename().string().rfind("python3", 0) == 0) return true;
  return false;
}

// pyvenv.cfg's "home = /x/bin": the installation the venv was made from.
std::string VenvHome(const fs::path& venv) {
  std::ifstream in(venv / "pyvenv.cfg");
  std::string line;
  while (std::getline(in, line)) {
    std::string key = line.substr(0, line.find('='));
    key.erase(key.find_last_not_of(" \t") + 1);
    if (key != "home" || line.find('=') == std::string::npos) continue;
    std::string value = line.substr(line.find('=') + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    value.erase(value.find_last_not_of(" \t\r") + 1);
    fs::path home(value);
    return home.filename() == "bin" ? home.parent_path().string() : home.string();
  }
  return "";
}

std::string FindBwrap() {
  for (const char* p : {"/usr/bin/bwrap", "/bin/bwrap", "/usr/local/bin/bwrap"})
    if (::access(p, X_OK) == 0) return p;
  return "";
}

void Add(std::vector<std::string>* argv, std::initializer_list<std::string> args) {
  argv->insert(argv->end(), args);
}

// The system (or the whole host: show_host), read-only, and the rest of the
// sandbox's own root.
void AddSystem(std::vector<std::string>* argv, bool show_host) {
  std::error_code ec;
  // /run holds the host's sockets (a container engine's among them), which
  // a read-only mount does not keep a job from connecting to.
  if (show_host) Add(argv, {"--ro-bind", "/", "/", "--tmpfs", "/run"});
  for (const char* p : kSystemPaths) {
    if (show_host) break;
    fs::file_status st = fs::symlink_status(p, ec);
    if (ec || !fs::exists(st)) continue;
    if (fs::is_symlink(st))
      Add(argv, {"--symlink", fs::read_symlink(p, ec).string(), p});
    else
      Add(argv, {"--ro-bind", p, p});
  }
  for (const char* secret : kEtcSecrets) {
    if (fs::is_directory(secret, ec))
      Add(argv, {"--tmpfs", secret});
    else if (fs::exists(secret, ec))
      Add(argv, {"--ro-bind", "/dev/null", secret});
  }
  Add(argv, {"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp"});
  glob_t g{};
  if (::glob("/dev/nvidia*", 0, nullptr, &g) == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) Add(argv, {"--dev-bind", g.gl_pathv[i], g.gl_pathv[i]});
  globfree(&g);
}

// A search entry with "..", as a shell writes it ("$PWD/../../.venv/bin"),
// is walked by the kernel through the folders before the "..": each must
// exist inside the sandbox, or the job's python3 silently becomes another
// one further down PATH. They are made there, empty, when the folder the
// entry leads to is shown and nothing already provides them.
template <typename Hidden>
void AddDotDotSteps(std::vector<std::string>* argv, const std::string& search,
                    const std::vector<std::string>& readable, const Hidden& below_hidden) {
  std::stringstream ss(search);
  std::string entry;
  std::vector<std::string> made;
  while (std::getline(ss, entry, ':')) {
    size_t dots = entry.find("/../");
    if (entry.empty() || entry[0] != '/' || dots == std::string::npos) continue;
    std::string target = Literal(entry), steps = entry.substr(0, dots);
    bool shown = std::find(readable.begin(), readable.end(), target) != readable.end();
    bool exists_inside = InSystem(Normal(steps)) || below_hidden(Normal(steps));
    for (const std::string& r : readable) exists_inside |= IsUnder(steps, r);
    if (!shown || exists_inside || std::find(made.begin(), made.end(), steps) != made.end())
      continue;
    made.push_back(steps);
    Add(argv, {"--dir", steps});
  }
}

}  // namespace

std::vector<std::string> PythonFolders(const std::string& path_var) {
  std::vector<std::string> out;
  auto add = [&out](const std::string& dir) {
    std::error_code ec;
    if (dir.empty() || dir == "/" || InSystem(dir) || InSystem(Normal(dir)) ||
        !fs::is_directory(dir, ec))
      return;
    for (const auto& o : out)
      if (o == dir) return;
    out.push_back(dir);
  };
  std::stringstream ss(path_var);
  std::string entry;
  while (std::getline(ss, entry, ':')) {
    if (entry.empty() || entry[0] != '/') continue;
    // As named (a venv reached through a link must be found where the job
    // looks for it); SandboxPrefix binds it from where it really is.
    fs::path dir = Literal(entry);
    add(dir.string());
    std::string name = dir.filename().string();
    if ((name != "bin" && name != "shims") || !IsPythonInstallation(dir.parent_path())) continue;
    add(dir.parent_path().string());
    std::string home = VenvHome(dir.parent_path());
    if (!home.empty()) add(Literal(home));
  }
  return out;
}

StatusOr<std::vector<std::string>> SandboxPrefix(const SandboxSpec& spec, const EnvMap& env) {
  std::string bwrap = FindBwrap();
  if (bwrap.empty())
    return FailedPrecondition(
        "jobs run confined by bubblewrap, which is not installed on this "
        "machine: apt-get install bubblewrap (scripts/setup.sh does)");
  // No capability inside, even when the agent runs as root (bwrap keeps
  // root's otherwise: a job could mount over its covers and see what they hide).
  // --die-with-parent: bwrap dies with the agent's spawning thread, and the
  // sandbox with bwrap. Without it, a bwrap killed while it set up (the
  // agent ending a job or dying then) left its sandbox's first process
  // waiting for ever for bwrap's go, a process nobody would end (seen after
  // a CI run).
  std::vector<std::string> argv = {
      bwrap,           "--unshare-pid",     "--unshare-ipc", "--unshare-uts",
      "--new-session", "--die-with-parent", "--cap-drop",    "ALL"};
  AddSystem(&argv, spec.show_host);
  auto home = env.find("HOME");
  if (home != env.end() && !home->second.empty() && Normal(home->second) != "/" &&
      !InSystem(Normal(home->second)))
    Add(&argv, {"--tmpfs", Normal(home->second)});
  std::vector<std::string> hidden;
  for (const std::string& h : spec.hidden) hidden.push_back(Normal(h));
  auto below_hidden = [&hidden](const std::string& d) {
    for (const std::string& h : hidden)
      if (IsUnder(d, h)) return true;
    return false;
  };
  // What the job's environment leads to: the interpreter it runs (an
  // absolute program, e.g. the SDK's sys.executable), PATH, PYTHONPATH.
  // Never a way into a hidden folder: those come only from spec.readable.
  std::string search;
  if (!spec.program.empty() && spec.program[0] == '/')
    search = fs::path(Literal(spec.program)).parent_path().string();
  for (const char* var : {"PATH", "PYTHONPATH"}) {
    auto it = env.find(var);
    if (it != env.end()) search += ":" + it->second;
  }
  std::vector<std::string> readable;
  for (const std::string& dir : spec.readable) readable.push_back(Literal(dir));
  for (const std::string& dir : PythonFolders(search))
    if (!below_hidden(Normal(dir)) && !below_hidden(Literal(dir))) readable.push_back(dir);
  // Read-only folders first, then the hidden ones over them, then what the
  // job needs from inside the hidden ones (its folders) over those. A folder
  // named through a link is shown both where it is and where it is named.
  std::vector<std::pair<std::string, std::string>> outside, inside;  // (source, target)
  std::error_code ec;
  for (const std::string& dir : readable) {
    std::string real = Normal(dir);
    if (!fs::is_directory(real, ec)) continue;
    for (const std::string& target : {real, dir}) {
      auto& list = below_hidden(target) ? inside : outside;
      if (std::find(list.begin(), list.end(), std::make_pair(real, target)) == list.end())
        list.emplace_back(real, target);
    }
  }
  // On the host's root (show_host) a folder is visible where it is, unless
  // a private tmpfs covers it: bound again it would only fail when its path
  // crosses an absolute link (bwrap makes the mount point in the new root,
  // where the link's target does not resolve; a worktree's .venv link).
  std::vector<std::string> covered = {"/tmp", "/var/tmp", "/run"};
  if (home != env.end() && !home->second.empty()) covered.push_back(Normal(home->second));
  auto visible_as_is = [&](const std::string& d) {
    if (!spec.show_host) return false;
    for (const std::string& c : covered)
      if (IsUnder(d, c) || IsUnder(Normal(d), c)) return false;
    return true;
  };
  for (const auto& [src, dst] : outside)
    if (!visible_as_is(dst)) Add(&argv, {"--ro-bind", src, dst});
  for (const std::string& d : hidden)
    if (fs::is_directory(d, ec)) Add(&argv, {"--tmpfs", d});
  for (const auto& [src, dst] : inside) Add(&argv, {"--ro-bind", src, dst});
  for (const std::string& dir : spec.also_writable) {
    std::string d = Normal(dir);
    if (fs::is_directory(d, ec)) Add(&argv, {"--bind", d, d});
  }
  AddDotDotSteps(&argv, search, readable, below_hidden);
  std::string writable = Normal(spec.writable);
  Add(&argv, {"--bind", writable, writable, "--"});
  return argv;
}

namespace {

// A change this recent may share its timestamp with the look that missed
// it (timestamps advance by the kernel's tick, not by the nanosecond).
constexpr int64_t kRacyNs = 2'000'000'000;

int64_t Ns(const struct timespec& t) { return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec; }

int64_t WallNowNs() {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return Ns(t);
}

// `path` and each folder above it ("/a/b": "/a/b", "/a", "/").
std::vector<std::string> SelfAndAncestors(const std::string& path) {
  std::vector<std::string> out;
  if (path.empty() || path[0] != '/') return out;
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  for (;;) {
    out.push_back(p);
    if (p == "/") return out;
    size_t slash = p.rfind('/');
    p = slash == 0 ? "/" : p.substr(0, slash);
  }
}

}  // namespace

bool SandboxPrefixCache::Seen::operator==(const Seen& o) const {
  return exists == o.exists && dev == o.dev && ino == o.ino && mode == o.mode &&
         mtime_ns == o.mtime_ns && ctime_ns == o.ctime_ns;
}

std::vector<std::string> SandboxPrefixCache::Key(const SandboxSpec& spec, const EnvMap& env) {
  // Every list with its length, so that no two inputs read alike.
  std::vector<std::string> key = {spec.writable, spec.show_host ? "host" : "system", spec.program};
  for (const std::vector<std::string>* list : {&spec.also_writable, &spec.readable, &spec.hidden}) {
    key.push_back(std::to_string(list->size()));
    key.insert(key.end(), list->begin(), list->end());
  }
  for (const char* var : {"PATH", "PYTHONPATH", "HOME"}) {
    auto it = env.find(var);
    key.push_back(it == env.end() ? std::string("unset") : "=" + it->second);
  }
  return key;
}

std::vector<SandboxPrefixCache::Watched> SandboxPrefixCache::WatchList(
    const SandboxSpec& spec, const EnvMap& env, const std::vector<std::string>& prefix) {
  std::vector<std::string> inputs = {spec.writable};
  for (const std::vector<std::string>* list : {&spec.also_writable, &spec.readable, &spec.hidden})
    inputs.insert(inputs.end(), list->begin(), list->end());
  for (const char* p : kSystemPaths) inputs.push_back(p);
  for (const char* p : kEtcSecrets) inputs.push_back(p);
  std::vector<Watched> out = {{"/dev", true}};  // the GPUs' nodes
  std::string search;
  if (!spec.program.empty() && spec.program[0] == '/') {
    inputs.push_back(spec.program);
    search = fs::path(Literal(spec.program)).parent_path().string();
  }
  auto home = env.find("HOME");
  if (home != env.end()) inputs.push_back(home->second);
  for (const char* var : {"PATH", "PYTHONPATH"}) {
    auto it = env.find(var);
    if (it != env.end()) search += ":" + it->second;
  }
  std::stringstream ss(search);
  for (std::string entry; std::getline(ss, entry, ':');) {
    if (entry.empty() || entry[0] != '/') continue;
    inputs.push_back(entry);
    // The folders before a ".." (AddDotDotSteps: whether they exist inside).
    for (size_t dots = entry.find("/../"); dots != std::string::npos;
         dots = entry.find("/../", dots + 1))
      inputs.push_back(entry.substr(0, dots));
    // What PythonFolders reads to tell a Python installation and its home:
    // each by itself, not the folder's listing (the folder of `yard`'s own
    // folder, of ~/bin, changes with every file made beside them, and
    // watching it made a remembered prefix miss on nearly every job).
    fs::path parent = fs::path(Literal(entry)).parent_path();
    out.push_back({(parent / "lib").string(), true});
    out.push_back({(parent / "pyvenv.cfg").string(), true});
    inputs.push_back((parent / "versions").string());
  }
  for (const std::string& arg : prefix)
    if (!arg.empty() && arg[0] == '/') inputs.push_back(arg);
  std::set<std::string> paths;
  for (const std::string& input : inputs) {
    for (const std::string& form : {Literal(input), Normal(input)})
      for (const std::string& p : SelfAndAncestors(form)) paths.insert(p);
  }
  for (const std::string& p : paths) out.push_back({p, false});
  return out;
}

SandboxPrefixCache::Seen SandboxPrefixCache::Look(const Watched& w) {
  Seen seen;
  struct stat st;
  if (::lstat(w.path.c_str(), &st) != 0) return seen;
  seen.exists = true;
  seen.dev = st.st_dev;
  seen.ino = st.st_ino;
  seen.mode = st.st_mode;
  // A link can be made anew on a freed inode; its times tell it apart.
  if (w.contents || S_ISLNK(st.st_mode)) {
    seen.mtime_ns = Ns(st.st_mtim);
    seen.ctime_ns = Ns(st.st_ctim);
  }
  return seen;
}

bool SandboxPrefixCache::StillSame(const Entry& e) {
  for (const auto& [w, seen] : e.watched)
    if (!(Look(w) == seen)) return false;
  return true;
}

StatusOr<std::vector<std::string>> SandboxPrefixCache::Get(const SandboxSpec& spec,
                                                           const EnvMap& env) {
  std::vector<std::string> key = Key(spec, env);
  {
    MutexLock lock(mu_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->key != key) continue;
      if (StillSame(*it)) return it->prefix;
      entries_.erase(it);
      break;
    }
  }
  // Computed, looked at, computed again: a change between the two
  // computations shows as two different prefixes (not remembered), a change
  // after the look as a difference from it when the prefix is next wanted.
  YARD_ASSIGN_OR_RETURN(std::vector<std::string> first, SandboxPrefix(spec, env));
  Entry entry;
  int64_t racy_after = WallNowNs() - kRacyNs;
  bool racy = false;
  for (const Watched& w : WatchList(spec, env, first)) {
    Seen seen = Look(w);
    // By mtime: a change of contents moves it (ctime also moves on a chmod).
    racy |= seen.mtime_ns > racy_after;
    entry.watched.emplace_back(w, seen);
  }
  YARD_ASSIGN_OR_RETURN(entry.prefix, SandboxPrefix(spec, env));
  MutexLock lock(mu_);
  computed_ += 1;
  if (racy || entry.prefix != first) return entry.prefix;
  entry.key = std::move(key);
  constexpr size_t kMaxEntries = 8;
  if (entries_.size() >= kMaxEntries) entries_.erase(entries_.begin());
  entries_.push_back(entry);
  return entry.prefix;
}

int SandboxPrefixCache::computed() const {
  MutexLock lock(mu_);
  return computed_;
}

Status CheckSandboxWorks(const std::string& writable) {
  SandboxSpec spec;
  spec.writable = writable;
  YARD_ASSIGN_OR_RETURN(std::vector<std::string> argv, SandboxPrefix(spec, EnvMap{}));
  argv.push_back("true");
  CommandSpec check;
  check.argv = std::move(argv);
  check.timeout = std::chrono::seconds(20);
  StatusOr<CommandResult> ran = ProcessCommandRunner().Run(check);
  if (!ran.ok())
    return FailedPrecondition("bubblewrap could not be run: " + ran.status().message());
  if (!ran->ok())
    return FailedPrecondition("bubblewrap cannot make a sandbox on this machine (" + ran->Reason() +
                              "); it needs unprivileged user namespaces "
                              "(sysctl kernel.unprivileged_userns_clone=1) or to run as root");
  return Status::Ok();
}

}  // namespace yard
