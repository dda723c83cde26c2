// Job assets: the editable files `yard init` writes beside a training
// script and `yard copy` carries to the next experiment (docs/workflow.md):
//   yard.yaml   defaults for `yard fit`/`submit` run in this folder
//   run.sh      the entry point: `yard fit` runs `bash run.sh ARGS` for
//               yard.yaml's script, so an edited run.sh runs
//   Dockerfile  an image with requirements.txt or environment.yml, the
//               framework the script imports and, for a notebook, Jupyter
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace yard::cli {

struct YardConfig {
  std::string script;
  std::vector<std::string> args;
  std::vector<std::string> machines;
  double cool_down_s = 0;
  std::string image;  // default-cpu, default-gpu or an image name
  std::string ckpt_dir, log_dir, out_dir;
  std::map<std::string, std::string> settings;  // --set KEY=VALUE
  std::map<std::string, std::string> env;
  // Which optional keys were present when loaded.
  bool has_cool_down = false;
};

inline constexpr const char* kYardYaml = "yard.yaml";

// Reads `path`; InvalidArgument naming the file and the bad key.
StatusOr<YardConfig> LoadYardConfig(const std::string& path);
std::string YardConfigToYaml(const YardConfig& c);

// The dependency manifest in `dir`: "requirements.txt", "environment.yml"
// (or .yaml), or "" when there is none.
std::string FindManifest(const std::string& dir);

// The base image for --image default-cpu / default-gpu, else `image` itself.
std::string BaseImageFor(const std::string& image);

// What a job's image must add to the base image for its script.
struct ScriptNeeds {
  bool tensorflow = false;  // imports tensorflow or keras
  bool torch = false;       // imports torch, torchvision or (pytorch_)lightning
  bool notebook = false;    // a .ipynb, run by the notebook runner
};
// From the script's text (a notebook's JSON too): its import lines.
ScriptNeeds NeedsOf(const std::string& script_name, const std::string& text);

std::string DockerfileFor(const std::string& image, const std::string& manifest,
                          const ScriptNeeds& needs = {});
// Runs yard.yaml's script; the args come from `yard fit` ("$@").
std::string RunShFor(const YardConfig& c);

// Files that make up a job's assets (present or not).
const std::vector<std::string>& AssetNames();

// KEY=VALUE -> (KEY, VALUE); InvalidArgument naming `flag` otherwise.
Status ParseKeyValue(const std::string& kv, const std::string& flag, std::string* key,
                     std::string* value);

}  // namespace yard::cli
