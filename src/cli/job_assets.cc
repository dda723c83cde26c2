#include "cli/job_assets.h"

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <yaml-cpp/yaml.h>
#include <nlohmann/json.hpp>

#include "cli/notebook.h"
#include "common/command_runner.h"

namespace yard::cli {

namespace fs = std::filesystem;

namespace {

StatusOr<std::vector<std::string>> StringList(const YAML::Node& n, const std::string& key) {
  std::vector<std::string> out;
  if (!n || n.IsNull()) return out;
  if (n.IsScalar()) {  // "a,b" or "a"
    std::stringstream ss(n.as<std::string>());
    for (std::string v; std::getline(ss, v, ',');)
      if (!v.empty()) out.push_back(v);
    return out;
  }
  if (!n.IsSequence()) return InvalidArgument(key + " is not a list");
  for (const auto& item : n) {
    if (!item.IsScalar()) return InvalidArgument(key + " holds a non-string");
    out.push_back(item.as<std::string>());
  }
  return out;
}

StatusOr<std::map<std::string, std::string>> StringMap(const YAML::Node& n,
                                                       const std::string& key) {
  std::map<std::string, std::string> out;
  if (!n || n.IsNull()) return out;
  if (!n.IsMap()) return InvalidArgument(key + " is not a mapping");
  for (const auto& kv : n) {
    if (!kv.second.IsScalar())
      return InvalidArgument(key + "." + kv.first.as<std::string>() + " is not a plain value");
    out[kv.first.as<std::string>()] = kv.second.as<std::string>();
  }
  return out;
}

std::string Str(const YAML::Node& n) { return n && n.IsScalar() ? n.as<std::string>() : ""; }

StatusOr<YardConfig> Parse(const YAML::Node& root) {
  YardConfig c;
  if (!root || root.IsNull()) return c;
  if (!root.IsMap()) return InvalidArgument("the top level is not a mapping");
  static const std::vector<std::string> kKeys = {"script",   "args",     "machines", "cool_down",
                                                 "image",    "ckpt_dir", "log_dir",  "out_dir",
                                                 "settings", "env"};
  for (const auto& kv : root) {
    std::string k = kv.first.as<std::string>();
    if (std::find(kKeys.begin(), kKeys.end(), k) == kKeys.end())
      return InvalidArgument("unknown key '" + k + "'");
  }
  c.script = Str(root["script"]);
  YARD_ASSIGN_OR_RETURN(c.args, StringList(root["args"], "args"));
  YARD_ASSIGN_OR_RETURN(c.machines, StringList(root["machines"], "machines"));
  if (root["cool_down"] && !root["cool_down"].IsNull()) {
    try {
      c.cool_down_s = root["cool_down"].as<double>();
    } catch (const YAML::Exception&) {
      return InvalidArgument("cool_down is not a number of seconds");
    }
    c.has_cool_down = true;
  }
  c.image = Str(root["image"]);
  c.ckpt_dir = Str(root["ckpt_dir"]);
  c.log_dir = Str(root["log_dir"]);
  c.out_dir = Str(root["out_dir"]);
  YARD_ASSIGN_OR_RETURN(c.settings, StringMap(root["settings"], "settings"));
  YARD_ASSIGN_OR_RETURN(c.env, StringMap(root["env"], "env"));
  return c;
}

}  // namespace

StatusOr<YardConfig> LoadYardConfig(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return NotFound(path + " does not exist or cannot be read");
  } catch (const YAML::Exception& e) {
    return InvalidArgument(path + ": " + e.what());
  }
  try {
    StatusOr<YardConfig> c = Parse(root);
    if (!c.ok()) return InvalidArgument(path + ": " + c.status().message());
    return c;
  } catch (const YAML::Exception& e) {
    return InvalidArgument(path + ": " + e.what());
  }
}

std::string YardConfigToYaml(const YardConfig& c) {
  YAML::Emitter out;
  out << YAML::Comment("Defaults for `yard fit` / `yard submit` in this folder; flags win.")
      << YAML::Newline;
  out << YAML::BeginMap;
  out << YAML::Key << "script" << YAML::Value << c.script;
  // Quoted: "0.1" stays a string for any YAML reader.
  out << YAML::Key << "args" << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (const auto& a : c.args) out << YAML::DoubleQuoted << a;
  out << YAML::EndSeq;
  out << YAML::Key << "machines" << YAML::Value << YAML::Flow << c.machines;
  out << YAML::Key << "cool_down" << YAML::Value << c.cool_down_s;
  out << YAML::Key << "image" << YAML::Value << c.image;
  out << YAML::Key << "ckpt_dir" << YAML::Value << c.ckpt_dir;
  out << YAML::Key << "log_dir" << YAML::Value << c.log_dir;
  out << YAML::Key << "out_dir" << YAML::Value << c.out_dir;
  out << YAML::Key << "settings" << YAML::Value;
  if (c.settings.empty()) out << YAML::Flow;
  out << YAML::BeginMap;
  for (const auto& [k, v] : c.settings)
    out << YAML::Key << k << YAML::Value << YAML::DoubleQuoted << v;
  out << YAML::EndMap;
  out << YAML::Key << "env" << YAML::Value;
  if (c.env.empty()) out << YAML::Flow;
  out << YAML::BeginMap;
  for (const auto& [k, v] : c.env) out << YAML::Key << k << YAML::Value << YAML::DoubleQuoted << v;
  out << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::string FindManifest(const std::string& dir) {
  for (const char* name : {"requirements.txt", "environment.yml", "environment.yaml"})
    if (fs::exists(fs::path(dir) / name)) return name;
  return "";
}

std::string BaseImageFor(const std::string& image) {
  // scripts/base_image.sh imports it; fully qualified, so no registry is asked.
  if (image.empty() || image == "default-cpu") return "localhost/trainyard/base-cpu";
  if (image == "default-gpu") return "docker.io/nvidia/cuda:12.2.2-cudnn8-runtime-ubuntu22.04";
  return image;
}

namespace {

// A notebook's code cells, one after another ("" when it is not JSON).
std::string NotebookCode(const std::string& text) {
  nlohmann::json nb = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  std::string code;
  if (!nb.is_object() || !nb.contains("cells") || !nb["cells"].is_array()) return code;
  for (const auto& cell : nb["cells"]) {
    if (!cell.is_object() || cell.value("cell_type", "") != "code" || !cell.contains("source"))
      continue;
    const auto& src = cell["source"];
    if (src.is_string()) code += src.get<std::string>() + "\n";
    if (src.is_array())
      for (const auto& line : src) code += line.is_string() ? line.get<std::string>() : "";
    code += "\n";
  }
  return code;
}

}  // namespace

ScriptNeeds NeedsOf(const std::string& script_name, const std::string& text) {
  ScriptNeeds needs;
  needs.notebook = fs::path(script_name).extension() == ".ipynb";
  static const std::regex kImport(
      R"(^\s*(?:import|from)\s+(tensorflow|keras|torch|torchvision|lightning|pytorch_lightning)\b)");
  std::istringstream lines(needs.notebook ? NotebookCode(text) : text);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (!std::regex_search(line, m, kImport)) continue;
    if (m[1] == "tensorflow" || m[1] == "keras")
      needs.tensorflow = true;
    else
      needs.torch = true;
  }
  return needs;
}

namespace {

// What the framework and Jupyter need on top of the base image: on the
// Debian base, Debian's own packages (the versions the instance's Debian
// runs: torch 1.13, numpy 1.24, nbclient 0.7) and TensorFlow 2.15.1 from
// PyPI, the version trainyard pins, which runs on Python 3.11 with that
// numpy; on the CUDA base, the same from PyPI.
void AddNeeds(std::ostringstream& d, const std::string& image, const ScriptNeeds& needs) {
  bool debian = image.empty() || image == "default-cpu";
  std::vector<std::string> apt, pip;
  if (needs.torch) (debian ? apt : pip).push_back(debian ? "python3-torch" : "torch==2.1.2");
  if (needs.tensorflow) {
    if (debian) apt.push_back("python3-numpy");
    pip.push_back(debian ? "tensorflow-cpu==2.15.1" : "tensorflow==2.15.1");
  }
  if (needs.notebook) {
    if (debian)
      apt.insert(apt.end(), {"python3-nbclient", "python3-nbformat", "python3-ipykernel"});
    else
      pip.insert(pip.end(), {"nbclient==0.7.2", "nbformat==5.5.0", "ipykernel==6.17.0"});
  }
  if (!apt.empty()) {
    d << "# What the script imports" << (needs.notebook ? ", and Jupyter to run the notebook" : "")
      << ": Debian's packages\nRUN apt-get update && apt-get install -y --no-install-recommends";
    for (const auto& p : apt) d << " " << p;
    d << " && rm -rf /var/lib/apt/lists/*\n";
  }
  if (!pip.empty()) {
    d << "# Pinned to what this base image runs (Python 3.11)\nRUN python3 -m pip install "
         "--no-cache-dir";
    for (const auto& p : pip) d << " " << p;
    d << "\n";
  }
}

}  // namespace

std::string DockerfileFor(const std::string& image, const std::string& manifest,
                          const ScriptNeeds& needs) {
  std::ostringstream d;
  d << "# Generated by `yard init`; edit freely. yard builds it once per change to it or\n"
    << "# to the files it COPYs, and runs the job's command in the job's own folder,\n"
    << "# mounted. By hand: podman build -t my-job . && podman run --rm -v \"$PWD\":/job my-job\n"
    << "FROM " << BaseImageFor(image) << "\n";
  if (image == "default-gpu")
    d << "RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip "
         "python3-venv && rm -rf /var/lib/apt/lists/*\n";
  d << "WORKDIR /job\n";
  AddNeeds(d, image, needs);
  if (manifest == "requirements.txt") {
    d << "COPY requirements.txt /job/requirements.txt\n"
      << "RUN python3 -m pip install --no-cache-dir -r /job/requirements.txt\n";
  } else if (!manifest.empty()) {
    d << "# conda-only entries of " << manifest << " are not installed: the image has no conda.\n"
      << "COPY " << manifest << " /job/" << manifest << "\n"
      << "RUN python3 -c \"import yaml,sys; d=yaml.safe_load(open('/job/" << manifest
      << "')); pip=[x for e in d.get('dependencies',[]) if isinstance(e,dict) for x in "
         "e.get('pip',[])]; print('\\n'.join(pip))\" > /tmp/req.txt && "
         "python3 -m pip install --no-cache-dir -r /tmp/req.txt\n";
  }
  d << "ENTRYPOINT [\"bash\", \"/job/run.sh\"]\n";
  return d.str();
}

std::string RunShFor(const YardConfig& c) {
  std::ostringstream s;
  s << "#!/usr/bin/env bash\n"
    << "# Entry point generated by `yard init`; edit freely. Extra arguments are passed on.\n"
    << "set -euo pipefail\n"
    << "cd \"$(dirname \"$0\")\"\n";
  std::string ext = fs::path(c.script).extension().string();
  s << "# yard fit passes yard.yaml's args (or those after --) as \"$@\".\n";
  s << "exec ";
  if (ext == ".py")
    s << "python3 ";
  else if (ext == ".sh")
    s << "bash ";
  else if (ext == ".ipynb")
    s << "python3 " << kNotebookRunnerPath << " ";  // shipped in the bundle
  s << ShellQuote(c.script);
  s << " \"$@\"\n";
  return s.str();
}

const std::vector<std::string>& AssetNames() {
  static const std::vector<std::string> kNames = {
      "yard.yaml",       "run.sh",           "Dockerfile", "requirements.txt",
      "environment.yml", "environment.yaml", ".yardignore"};
  return kNames;
}

Status ParseKeyValue(const std::string& kv, const std::string& flag, std::string* key,
                     std::string* value) {
  size_t eq = kv.find('=');
  if (eq == std::string::npos || eq == 0)
    return InvalidArgument(flag + " wants KEY=VALUE, got '" + kv + "'");
  *key = kv.substr(0, eq);
  *value = kv.substr(eq + 1);
  return Status::Ok();
}

}  // namespace yard::cli
