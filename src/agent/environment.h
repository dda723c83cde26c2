// Job environments on the instance: a job whose folder holds
// requirements.txt runs in a Python venv built from it
// (`python3 -m venv --system-site-packages` + `pip install -r`), cached
// under <agent work dir>/envs/<key>, where the key is the sha256 of the
// manifest (normalized) and the python used: a second job with the same
// manifest on the same instance reuses it without building again.
#pragma once

#include <functional>
#include <string>

#include "agent/job_setup.h"
#include "common/status.h"

namespace yard {

// The manifest without comments, blank lines and surrounding spaces, one
// requirement a line in the original order.
std::string NormalizeRequirements(const std::string& text);
// sha256 hex of the normalized manifest and `python` (the interpreter's
// identity, e.g. its version line).
std::string EnvironmentKey(const std::string& manifest_text, const std::string& python);

struct PreparedEnvironment {
  std::string venv;     // "" when the job has no requirements.txt
  bool reused = false;  // found ready in the cache
  double seconds = 0;   // time spent here
};

// Builds or reuses the venv for `job_work`/requirements.txt. `env` is the
// job's environment (PIP_INDEX_URL and the like apply). FailedPrecondition
// with pip's own output when the install fails (nothing is cached then).
StatusOr<PreparedEnvironment> PrepareEnvironment(const std::string& agent_work_dir,
                                                 const std::string& job_work, const EnvMap& env);

// `env` with the venv's bin/ first on PATH and VIRTUAL_ENV set.
void ActivateEnvironment(const std::string& venv, EnvMap* env);

}  // namespace yard
