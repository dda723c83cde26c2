// `yard copy SRC DEST`: starts the next experiment from the last one by
// copying its job assets (job_assets.h) and the named training artifacts.
#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "cli/job_assets.h"

namespace yard::cli {

namespace fs = std::filesystem;

namespace {

struct CopyFlags {
  std::string src, dest;
  std::vector<std::string> artifacts;
  bool force = false;
};

int RunCopy(const CopyFlags& f) {
  if (!fs::is_directory(f.src)) return Fail(f.src + " is not a folder");
  std::vector<std::string> names;
  for (const auto& n : AssetNames())
    if (fs::is_regular_file(fs::path(f.src) / n)) names.push_back(n);
  for (const auto& a : f.artifacts) {
    fs::path p(a);
    if (p.is_absolute() || p.lexically_normal().string().starts_with(".."))
      return Fail("--include-training-artifact wants a path inside " + f.src + ", got '" + a + "'");
    if (!fs::exists(fs::path(f.src) / p)) return Fail(a + " is not in " + f.src);
    names.push_back(p.lexically_normal().string());
  }
  if (names.empty())
    return Fail("nothing to copy: " + f.src + " has no job assets (run `yard init` there)");
  std::string existing;
  for (const auto& n : names)
    if (fs::exists(fs::path(f.dest) / n)) existing += (existing.empty() ? "" : ", ") + n;
  if (!existing.empty() && !f.force)
    return Fail("would overwrite " + existing + " in " + f.dest + "; pass --force to replace them");
  std::error_code ec;
  fs::create_directories(f.dest, ec);
  if (ec) return Fail("creating " + f.dest + ": " + ec.message());
  for (const auto& n : names) {
    fs::path to = fs::path(f.dest) / n;
    if (to.has_parent_path()) fs::create_directories(to.parent_path(), ec);
    fs::copy(fs::path(f.src) / n, to,
             fs::copy_options::overwrite_existing | fs::copy_options::recursive, ec);
    if (ec) return Fail("copying " + n + ": " + ec.message());
    std::cout << "copied " << n << "\n";
  }
  return 0;
}

}  // namespace

Runner SetupCopy(CLI::App* sub, GlobalFlags* global) {
  auto f = std::make_shared<CopyFlags>();
  sub->add_option("src", f->src, "the previous experiment's folder")->required();
  sub->add_option("dest", f->dest, "the new experiment's folder")->required();
  sub->add_option("--include-training-artifact", f->artifacts,
                  "also copy this file of the experiment, e.g. train.py (repeatable)");
  sub->add_flag("--force", f->force, "overwrite files in DEST");
  return [f] { return RunCopy(*f); };
}

}  // namespace yard::cli
