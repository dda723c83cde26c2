#include "agent/container.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <sstream>

#include "agent/job_process.h"
#include "common/file_lock.h"
#include "common/files.h"
#include "common/hashing.h"

namespace yard {

namespace fs = std::filesystem;

namespace {

// A build installs packages; a pull fetches gigabytes. Either may take long,
// and a job that fails after this long still says why.
constexpr auto kBuildTimeout = std::chrono::hours(2);
constexpr size_t kOutputTail = 6000;
// `podman run` lowers its own hard nproc limit to this on start (podman 4.3,
// measured here), and runc cannot give the container more than podman has:
// asking for more fails every job with "error setting rlimit type 6".
constexpr rlim_t kPodmanNprocCap = 32768;

std::string Tail(const std::string& s) {
  return s.size() <= kOutputTail ? s : "..." + s.substr(s.size() - kOutputTail);
}

std::string Seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", s);
  return buf;
}

StatusOr<CommandResult> Podman(CommandRunner* podman, std::vector<std::string> args,
                               std::chrono::milliseconds timeout = std::chrono::seconds(60),
                               const LineSink& on_line = nullptr) {
  CommandSpec spec;
  spec.argv = {"podman"};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.timeout = timeout;
  spec.on_line = on_line;
  StatusOr<CommandResult> r = podman->Run(spec);
  if (!r.ok() && r.status().code() == Code::kNotFound)
    return FailedPrecondition("podman is not installed on this instance (" + r.status().message() +
                              "): install it or run without an image");
  return r;
}

StatusOr<bool> ImageExists(CommandRunner* podman, const std::string& image) {
  YARD_ASSIGN_OR_RETURN(CommandResult r, Podman(podman, {"image", "exists", image}));
  if (r.exit_code == 0) return true;
  if (r.exit_code == 1) return false;
  return FailedPrecondition("podman image exists " + image + " failed: " + r.Reason());
}

// Each non-blank line of podman's output, as it comes, to `progress` as
// "WHAT: line" (nothing when `progress` is unset).
LineSink Relay(const LineSink& progress, const std::string& what) {
  if (!progress) return nullptr;
  return [progress, what](const std::string& line) {
    std::string text = line.substr(0, line.find_last_not_of(" \t\r") + 1);
    if (!text.empty()) progress(what + ": " + text);
  };
}

// Podman's output for a failure message: its last line when `progress` has
// shown every line already, else the tail of it all.
std::string Told(const CommandResult& r, const LineSink& progress) {
  return progress ? r.Reason() + " (podman's output is above)" : Tail(r.out + r.err);
}

StatusOr<EnsuredImage> EnsureNamedImage(CommandRunner* podman, const std::string& name,
                                        const LineSink& progress) {
  EnsuredImage out;
  out.image = ResolveImageName(name);
  YARD_ASSIGN_OR_RETURN(bool exists, ImageExists(podman, out.image));
  if (exists) return out;
  YARD_ASSIGN_OR_RETURN(
      CommandResult r, Podman(podman, {"pull", out.image}, kBuildTimeout, Relay(progress, "pull")));
  if (!r.ok()) {
    std::string hint =
        name == "default-cpu" ? " (build it on the instance with scripts/base_image.sh)" : "";
    return FailedPrecondition("image " + out.image +
                              " is not on this instance and could not be "
                              "pulled" +
                              hint + ":\n" + Told(r, progress));
  }
  out.built = true;
  return out;
}

// "NAME ID" lines for the FROM images podman has now ("" for those it
// lacks: the build pulls them). A base rebuilt (scripts/base_image.sh)
// changes them, and so the key.
std::string BaseImageIds(CommandRunner* podman, const std::string& dockerfile) {
  std::string out;
  for (const std::string& base : DockerfileBases(dockerfile)) {
    if (base.find('$') != std::string::npos) continue;  // an ARG: cannot be known here
    StatusOr<CommandResult> r = Podman(podman, {"image", "inspect", "--format", "{{.Id}}", base});
    out += base + " " + (r.ok() && r->ok() ? r->out : "\n");
  }
  return out;
}

StatusOr<EnsuredImage> BuildDockerfile(CommandRunner* podman, const std::string& job_work,
                                       const Manifest& context, const std::string& lock_dir,
                                       const LineSink& progress) {
  std::string dockerfile = job_work + "/Dockerfile";
  YARD_ASSIGN_OR_RETURN(std::string text, ReadFile(dockerfile));
  EnsuredImage out;
  std::string key = ImageKey(text, context, BaseImageIds(podman, text));
  out.image = JobImageTag(key);
  YARD_RETURN_IF_ERROR(MakeDirs(lock_dir));
  FileLock lock(lock_dir + "/" + key + ".lock");  // one build per key at a time
  if (!lock.ok()) return Internal("cannot lock " + lock_dir + "/" + key + ".lock");
  YARD_ASSIGN_OR_RETURN(bool exists, ImageExists(podman, out.image));
  if (exists) return out;
  // --network=host, as for the job: RUN steps reach the package indexes the
  // instance reaches, a mirror on its loopback included.
  YARD_ASSIGN_OR_RETURN(CommandResult r, Podman(podman,
                                                {"build", "--layers", "--network=host", "-t",
                                                 out.image, "-f", dockerfile, job_work},
                                                kBuildTimeout, Relay(progress, "build")));
  if (!r.ok())
    return FailedPrecondition("podman build of the job's Dockerfile failed (exit code " +
                              std::to_string(r.exit_code) + "):\n" + Told(r, progress));
  out.built = true;
  return out;
}

std::string RlimitValue(rlim_t v) { return v == RLIM_INFINITY ? "-1" : std::to_string(v); }

// The words of one Dockerfile instruction: the JSON form
// (`COPY ["a b", "dst"]`) or whitespace-separated words.
std::vector<std::string> InstructionWords(const std::string& instruction) {
  std::vector<std::string> words;
  size_t pos = 0;
  auto next_word = [&](std::string* w) {
    size_t start = instruction.find_first_not_of(" \t", pos);
    if (start == std::string::npos) return false;
    size_t end = instruction.find_first_of(" \t", start);
    pos = end == std::string::npos ? instruction.size() : end;
    *w = instruction.substr(start, pos - start);
    return true;
  };
  for (std::string w; next_word(&w);) {
    if (words.size() >= 1 && w[0] == '[') {  // the JSON form: ["src", "dst"]
      size_t start = instruction.find('[', pos - w.size());
      nlohmann::json list = nlohmann::json::parse(instruction.substr(start), nullptr, false);
      if (list.is_array()) {
        for (const auto& item : list)
          if (item.is_string()) words.push_back(item.get<std::string>());
        return words;
      }
    }
    words.push_back(w);
  }
  return words;
}

bool IsGpuNode(const std::string& path, std::string* index) {
  const std::string prefix = "/dev/nvidia";
  if (path.compare(0, prefix.size(), prefix) != 0 || path.size() == prefix.size()) return false;
  std::string rest = path.substr(prefix.size());
  if (!std::all_of(rest.begin(), rest.end(), ::isdigit)) return false;
  if (index) *index = rest;
  return true;
}

}  // namespace

std::string ResolveImageName(const std::string& name) {
  if (name == "default-cpu") return kBaseCpuImage;
  if (name == "default-gpu") return kBaseGpuImage;
  return name;
}

std::vector<std::string> DockerfileSources(const std::string& dockerfile) {
  std::vector<std::string> out;
  std::istringstream in(dockerfile);
  std::string instruction;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    size_t first = line.find_first_not_of(" \t");
    if (instruction.empty() && (first == std::string::npos || line[first] == '#')) continue;
    if (!line.empty() && line.back() == '\\') {  // continued on the next line
      instruction += line.substr(0, line.size() - 1) + " ";
      continue;
    }
    instruction += line;
    std::vector<std::string> words = InstructionWords(instruction);
    instruction.clear();
    if (words.size() < 3) continue;
    std::string op = words[0];
    std::transform(op.begin(), op.end(), op.begin(), ::toupper);
    if (op != "COPY" && op != "ADD") continue;
    std::vector<std::string> args;
    bool from_elsewhere = false;
    for (size_t i = 1; i < words.size(); ++i) {
      if (words[i].rfind("--from", 0) == 0) from_elsewhere = true;  // a stage or an image
      if (words[i].rfind("--", 0) != 0) args.push_back(words[i]);
    }
    if (from_elsewhere || args.size() < 2) continue;
    for (size_t i = 0; i + 1 < args.size(); ++i) {
      const std::string& src = args[i];
      if (src.find("://") != std::string::npos || src.rfind("git@", 0) == 0) continue;  // ADD URL
      out.push_back(src.rfind("<<", 0) == 0 ? "." : src);  // a heredoc: be safe, all of it
    }
  }
  return out;
}

Manifest UsedContext(const Manifest& context, const std::vector<std::string>& sources) {
  std::vector<std::string> patterns;
  for (std::string src : sources) {
    // ARG/ENV substitution is not followed: any file may be meant.
    if (src.find('$') != std::string::npos) return context;
    while (src.rfind("./", 0) == 0) src.erase(0, 2);
    while (!src.empty() && src[0] == '/') src.erase(0, 1);
    while (!src.empty() && src.back() == '/') src.pop_back();
    if (src.empty() || src == ".") return context;
    patterns.push_back(src);
  }
  Manifest used;
  for (const FileEntry& f : context.files) {
    bool hit = false;
    for (const std::string& p : patterns) {
      // The file itself, or a folder above it, matches (COPY dir/ copies what is under it).
      for (size_t end = f.path.size(); !hit && end != std::string::npos;
           end = end == 0 ? std::string::npos : f.path.rfind('/', end - 1)) {
        std::string prefix = f.path.substr(0, end);
        if (prefix.empty()) break;
        hit = ::fnmatch(p.c_str(), prefix.c_str(), FNM_PATHNAME) == 0;
      }
      if (hit) break;
    }
    if (hit) used.files.push_back(f);
  }
  return used;
}

std::vector<std::string> DockerfileBases(const std::string& dockerfile) {
  std::vector<std::string> bases, stages;
  std::istringstream in(dockerfile);
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> words = InstructionWords(line);
    if (words.empty()) continue;
    std::string op = words[0];
    std::transform(op.begin(), op.end(), op.begin(), ::toupper);
    if (op != "FROM") continue;
    std::vector<std::string> args;
    for (size_t i = 1; i < words.size(); ++i)
      if (words[i].rfind("--", 0) != 0) args.push_back(words[i]);
    if (args.empty()) continue;
    if (args.size() >= 3) stages.push_back(args[2]);  // FROM image AS name
    const std::string& image = args[0];
    if (image == "scratch" || std::find(stages.begin(), stages.end(), image) != stages.end() ||
        std::find(bases.begin(), bases.end(), image) != bases.end())
      continue;
    bases.push_back(image);
  }
  return bases;
}

std::string ImageKey(const std::string& dockerfile, const Manifest& context,
                     const std::string& base_ids) {
  Sha256 h;
  h.Update("yard-image-v1\n");
  h.Update(std::to_string(base_ids.size()) + "\n");
  h.Update(base_ids);
  h.Update(std::to_string(dockerfile.size()) + "\n");
  h.Update(dockerfile);
  for (const FileEntry& f : UsedContext(context, DockerfileSources(dockerfile)).files) {
    std::ostringstream line;
    line << "\n"
         << f.path.size() << ":" << f.path << " " << std::oct << f.mode << std::dec << " " << f.size
         << " " << f.link_target.size() << ":" << f.link_target;
    for (const ChunkRef& c : f.chunks) line << " " << c.hash;
    h.Update(line.str());
  }
  return h.FinishHex();
}

std::string JobImageTag(const std::string& key) {
  return std::string(kJobImageRepo) + ":" + key.substr(0, 24);
}

StatusOr<EnsuredImage> EnsureImage(CommandRunner* podman, const std::string& image_name,
                                   const std::string& job_work, const Manifest& context,
                                   const std::string& lock_dir, const LineSink& progress) {
  auto start = std::chrono::steady_clock::now();
  StatusOr<EnsuredImage> out = image_name.empty()
                                   ? BuildDockerfile(podman, job_work, context, lock_dir, progress)
                                   : EnsureNamedImage(podman, image_name, progress);
  if (out.ok())
    out->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

std::vector<std::string> ContainerArgv(const ContainerSpec& spec) {
  // Cancel: the shim SIGTERMs every descendant at once, and conmon and the
  // container's processes are descendants (conmon is re-parented to the
  // shim, a subreaper). --sig-proxy=false lets `podman run` simply die of
  // it: proxying, it raced conmon's own death and waited for an exit that
  // was never written until SIGKILL. --init puts a tiny init at PID 1, which
  // passes the SIGTERM on (a job at PID 1 would ignore it) and reaps.
  // --pull=never: EnsureImage made sure the image is here.
  // --log-driver=none: the output reaches the agent through podman's
  // stdout; a log file in podman's storage would only grow.
  std::vector<std::string> argv = {"podman",
                                   "run",
                                   "--rm",
                                   "--init",
                                   "--sig-proxy=false",
                                   "--network=host",
                                   "--pull=never",
                                   "--log-driver=none"};
  if (!spec.cidfile.empty()) argv.push_back("--cidfile=" + spec.cidfile);
  for (const auto& u : spec.ulimits)
    argv.push_back("--ulimit=" + u.name + "=" + RlimitValue(u.soft) + ":" + RlimitValue(u.hard));
  for (const auto& m : spec.mounts) argv.push_back("--volume=" + m + ":" + m);
  for (const auto& d : spec.devices) argv.push_back("--device=" + d);
  for (const auto& k : spec.env_keys) argv.push_back("--env=" + k);
  if (!spec.work_dir.empty()) argv.push_back("--workdir=" + spec.work_dir);
  // The whole command as the entry point, in podman's JSON form: the
  // image's own ENTRYPOINT and CMD do not wrap or extend it.
  if (!spec.command.empty()) argv.push_back("--entrypoint=" + nlohmann::json(spec.command).dump());
  argv.push_back(spec.image);
  return argv;
}

StatusOr<std::vector<std::string>> GpuDevices(const std::optional<std::string>& visible_devices,
                                              const std::vector<std::string>& host_nodes) {
  std::vector<std::string> gpus;
  if (!visible_devices) {
    for (const auto& n : host_nodes)
      if (IsGpuNode(n, nullptr)) gpus.push_back(n);
  } else {
    std::stringstream list(*visible_devices);
    for (std::string item; std::getline(list, item, ',');) {
      item.erase(0, item.find_first_not_of(' '));
      item.erase(item.find_last_not_of(' ') + 1);
      if (item.empty()) continue;
      if (item == "-1") return std::vector<std::string>{};  // CUDA: none from here on
      if (!std::all_of(item.begin(), item.end(), ::isdigit))
        return InvalidArgument("CUDA_VISIBLE_DEVICES holds '" + item +
                               "', not a GPU index: containers need indices to find /dev/nvidiaN");
      std::string node = "/dev/nvidia" + std::to_string(std::stoul(item));
      if (std::find(host_nodes.begin(), host_nodes.end(), node) != host_nodes.end())
        gpus.push_back(node);
    }
  }
  if (gpus.empty()) return gpus;
  for (const char* control :
       {"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"})
    if (std::find(host_nodes.begin(), host_nodes.end(), control) != host_nodes.end())
      gpus.push_back(control);
  return gpus;
}

std::vector<std::string> HostNvidiaNodes() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/dev", ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind("nvidia", 0) == 0) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<ContainerSpec::Ulimit> OwnUlimits() {
  std::vector<ContainerSpec::Ulimit> out;
  for (auto [name, resource] : {std::pair{"nofile", RLIMIT_NOFILE}, {"nproc", RLIMIT_NPROC}}) {
    struct rlimit rl;
    if (::getrlimit(resource, &rl) != 0) continue;
    if (resource == RLIMIT_NPROC) {
      rl.rlim_cur = std::min<rlim_t>(rl.rlim_cur, kPodmanNprocCap);
      rl.rlim_max = std::min<rlim_t>(rl.rlim_max, kPodmanNprocCap);
    }
    out.push_back({name, rl.rlim_cur, rl.rlim_max});
  }
  return out;
}

bool UsesContainer(const Assignment& a, const std::string& job_work) {
  return !a.image.empty() || fs::is_regular_file(job_work + "/Dockerfile");
}

StatusOr<std::string> SetUpContainer(CommandRunner* podman, const std::string& agent_work_dir,
                                     const Assignment& a, const JobPaths& paths,
                                     const EnvMap& job_env, JobSpawnOptions* options,
                                     const std::function<void(const std::string&)>& say) {
  if (a.nodes > 1)
    return FailedPrecondition(
        "container images are not supported for multi-node jobs yet: "
        "run without --image and without a Dockerfile");
  say(a.image.empty() ? "image from Dockerfile: preparing" : "image " + a.image + ": preparing");
  std::string lock_dir = fs::absolute(fs::path(agent_work_dir) / "images").string();
  StatusOr<EnsuredImage> image = EnsureImage(podman, a.image, paths.work, a.bundle, lock_dir, say);
  if (!image.ok()) return image.status().WithContext("image");
  say("image " + image->image +
      (image->built ? " built in " + Seconds(image->seconds) + " s" : " (cached)"));
  // The instance's GPU slice may come in the agent's own environment (the
  // local provider sets it there), which is in options->env, not job_env.
  EnvMap inside = job_env;
  auto visible = options->env.find("CUDA_VISIBLE_DEVICES");
  if (visible != options->env.end()) inside.insert(*visible);
  StatusOr<std::vector<std::string>> devices = GpuDevices(
      visible == options->env.end() ? std::nullopt : std::optional<std::string>(visible->second),
      HostNvidiaNodes());
  if (!devices.ok()) return devices.status();
  ContainerSpec spec;
  spec.image = image->image;
  spec.command = options->argv;
  spec.work_dir = paths.work;
  spec.mounts = {paths.root};
  for (const auto& [k, v] : inside) spec.env_keys.push_back(k);
  spec.devices = std::move(*devices);
  spec.cidfile = paths.root + "/container.id";
  spec.ulimits = OwnUlimits();
  for (const auto& [k, v] : inside) options->env[k] = v;  // where podman reads the values
  options->argv = ContainerArgv(spec);
  return spec.cidfile;
}

std::string RemoveContainer(CommandRunner* podman, const std::string& cidfile) {
  if (cidfile.empty() || !fs::exists(cidfile)) return "";
  StatusOr<CommandResult> r =
      Podman(podman, {"rm", "--force", "--ignore", "--time=0", "--cidfile=" + cidfile});
  if (!r.ok()) return r.status().message();
  return r->ok() ? "" : r->Reason();
}

}  // namespace yard
