// Small file helpers used across roles.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace yard {

StatusOr<std::string> ReadFile(const std::string& path);
// Writes to `path.tmp-<pid>` then renames over `path`, so readers see the
// old or the new content, never a mix. `mode` applies to the new file.
Status WriteFileAtomic(const std::string& path, std::string_view data, int mode = 0644);
// mkdir -p.
Status MakeDirs(const std::string& path);
// Value of an environment variable, or `fallback` when unset or empty.
std::string EnvOr(const char* name, const std::string& fallback);
// Absolute path of the running executable (/proc/self/exe).
std::string SelfExecutable();
// Trainyard's state folder: $YARD_HOME, else ~/.local/share/trainyard.
std::string DefaultYardHome();
// Name of the OS user running us.
std::string LocalUserName();

}  // namespace yard
