// Job environments on the instance: a job whose folder holds
// requirements.txt or environment.yml (or .yaml) runs in a Python venv
// built from it (`python3 -m venv --system-site-packages` + `pip install`),
// cached under <agent work dir>/envs/<key>, where the key is the sha256 of
// the resolved requirement list and the python used: a second job with the
// same list on the same instance reuses it without building again.
//
// environment.yml is read the way conda would, but installed with pip: its
// `pip:` list as is, its conda entries converted to pip requirements
// (`numpy=1.24` -> `numpy==1.24.*`, conda's meaning of one `=`), `python`
// and `pip` left out, and entries that pip cannot serve skipped at build
// time. When both files exist, requirements.txt wins (docs/workflow.md).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "agent/job_setup.h"
#include "common/command_runner.h"
#include "common/status.h"

namespace yard {

// The manifest without comments, blank lines and surrounding spaces, one
// requirement a line in the original order.
std::string NormalizeRequirements(const std::string& text);
// sha256 hex of the normalized manifest and `python` (the interpreter's
// identity, e.g. its version line).
std::string EnvironmentKey(const std::string& manifest_text, const std::string& python);

// One conda match spec (`numpy=1.24`, `conda-forge::scipy >=1.10`,
// `pandas 2.0.* py311_0`) as a pip requirement. Returns "" when the entry
// is left out, with the reason in *note; a non-empty result may come with a
// note too (a dropped build string).
std::string CondaSpecToPip(const std::string& spec, std::string* note);

// What an environment.yml asks pip for.
struct CondaRequirements {
  std::vector<std::string> pip;    // the `pip:` list, verbatim
  std::vector<std::string> conda;  // converted conda entries (pip may not serve them)
  std::vector<std::string> notes;  // "skipped ENTRY (why)", "ENTRY installed as LINE (why)"
};
// Parses environment.yml text. InvalidArgument with yaml-cpp's own message
// (line and column) for bad YAML, or naming the key of the wrong shape.
StatusOr<CondaRequirements> ParseEnvironmentYml(const std::string& text);

// The manifest of a job folder, resolved into pip requirements.
struct EnvironmentManifest {
  std::string source;                 // "requirements.txt", "environment.yml", "" for none
  std::string requirements;           // normalized lines; what the cache key hashes
  std::vector<std::string> optional;  // lines (converted conda entries) skipped if pip lacks them
  std::vector<std::string> notes;     // for the job's output: what was ignored or left out
};
// Reads `job_work`'s manifest; source "" when it has none. Errors name the
// file and carry the parser's message.
StatusOr<EnvironmentManifest> ReadEnvironmentManifest(const std::string& job_work);

struct PreparedEnvironment {
  std::string venv;                  // "" when there is nothing to install
  bool reused = false;               // found ready in the cache
  double seconds = 0;                // time spent here
  std::vector<std::string> skipped;  // "LINE: pip cannot serve it (pip's reason)"
};

// Builds or reuses the venv for `manifest` (pip runs in `job_work`, so
// relative paths in it work). `env` is the job's environment
// (PIP_INDEX_URL and the like apply). FailedPrecondition with pip's own
// output when the install fails (nothing is cached then).
// `runner` runs python3 and pip (tests pass a fake).
StatusOr<PreparedEnvironment> PrepareEnvironment(CommandRunner* runner,
                                                 const std::string& agent_work_dir,
                                                 const std::string& job_work,
                                                 const EnvironmentManifest& manifest,
                                                 const EnvMap& env);

// `env` with the venv's bin/ first on PATH and VIRTUAL_ENV set.
void ActivateEnvironment(const std::string& venv, EnvMap* env);

// The job runner's environment step: reads the manifest, builds or reuses
// its venv and activates it in *env, telling the job's output what it does
// through `say` (one line, no "yard: " prefix, no newline). An error fails
// the job before its script runs. `runner` runs python3 and pip.
Status SetUpJobEnvironment(CommandRunner* runner, const std::string& agent_work_dir,
                           const std::string& job_work, EnvMap* env,
                           const std::function<void(const std::string&)>& say);

}  // namespace yard
