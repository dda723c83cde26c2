// `yard init SCRIPT`: writes the job assets (yard.yaml, run.sh, Dockerfile)
// for the user to edit; see job_assets.h.
#include <filesystem>
#include <fstream>
#include <iostream>

#include "cli/commands.h"
#include "cli/job_assets.h"
#include "common/files.h"

namespace yard::cli {

namespace fs = std::filesystem;

namespace {

struct InitFlags {
  std::string script;
  std::vector<std::string> args;
  std::vector<std::string> machines;
  std::vector<std::string> sets;
  std::string image = "default-cpu";
  double cool_down_s = 0;
  std::string ckpt_dir = "checkpoints", log_dir = "logs", out_dir = "outputs";
  bool force = false;
};

int RunInit(const InitFlags& f) {
  std::string ext = fs::path(f.script).extension().string();
  if (ext != ".py" && ext != ".sh" && ext != ".ipynb")
    return Fail("init wants a .py, .sh or .ipynb script, got '" + f.script + "'");
  if (!fs::exists(f.script))
    return Fail(f.script + " does not exist in " + fs::current_path().string());
  fs::path rel = fs::relative(fs::absolute(f.script), fs::current_path());
  if (rel.empty() || *rel.begin() == "..")
    return Fail(f.script + " is outside the current folder: cd to the project folder first");
  YardConfig c;
  c.script = rel.string();
  c.args = f.args;
  c.machines = f.machines;
  c.cool_down_s = f.cool_down_s;
  c.image = f.image;
  c.ckpt_dir = f.ckpt_dir;
  c.log_dir = f.log_dir;
  c.out_dir = f.out_dir;
  for (const auto& kv : f.sets) {
    std::string k, v;
    Status st = ParseKeyValue(kv, "--set", &k, &v);
    if (!st.ok()) return Fail(st.message());
    c.settings[k] = v;
  }
  std::string manifest = FindManifest(".");
  StatusOr<std::string> text = ReadFile(f.script);
  if (!text.ok()) return Fail(text.status().message());
  std::vector<std::pair<std::string, std::string>> files = {
      {kYardYaml, YardConfigToYaml(c)},
      {"run.sh", RunShFor(c)},
      {"Dockerfile", DockerfileFor(f.image, manifest, NeedsOf(f.script, *text))},
  };
  std::string existing;
  for (const auto& [name, _] : files)
    if (fs::exists(name)) existing += (existing.empty() ? "" : ", ") + name;
  if (!existing.empty() && !f.force)
    return Fail("would overwrite " + existing + "; pass --force to replace them");
  for (const auto& [name, text] : files) {
    std::ofstream out(name, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.good()) return Fail("could not write " + name);
    std::cout << "wrote " << name << "\n";
  }
  fs::permissions("run.sh", fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec,
                  fs::perm_options::add);
  if (manifest.empty())
    std::cerr << "yard: no requirements.txt or environment.yml here: the Dockerfile installs "
                 "only what the script imports, and jobs without it get no environment\n";
  else
    std::cerr << "yard: the Dockerfile and job environments are built from " << manifest << "\n";
  return 0;
}

}  // namespace

Runner SetupInit(CLI::App* sub, GlobalFlags* global) {
  auto f = std::make_shared<InitFlags>();
  sub->add_option("script", f->script, "training script (.py, .sh, .ipynb)")->required();
  sub->add_option("args", f->args, "arguments for the script (after --)");
  // One value per occurrence, so that `--set A=1 -- --lr 1` keeps its `--`.
  sub->add_option("--machines,-m", f->machines, "machine ids in order of preference")
      ->delimiter(',')
      ->allow_extra_args(false);
  sub->add_option("--set", f->sets, "KEY=VALUE provider setting (repeatable)")
      ->allow_extra_args(false);
  sub->add_option("--image", f->image, "default-cpu, default-gpu or a base image name")
      ->capture_default_str();
  sub->add_option("--cool-down", f->cool_down_s, "seconds to keep the instance warm after");
  sub->add_option("--ckpt-dir", f->ckpt_dir, "where fit mirrors checkpoints")
      ->capture_default_str();
  sub->add_option("--log-dir", f->log_dir, "where fit mirrors logs")->capture_default_str();
  sub->add_option("--out-dir", f->out_dir, "where fit mirrors outputs")->capture_default_str();
  sub->add_flag("--force", f->force, "overwrite existing assets");
  return [f] { return RunInit(*f); };
}

}  // namespace yard::cli
