#include "agent/job_folders.h"

#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace yard {

namespace fs = std::filesystem;

namespace {

// "<job>-<attempt>" → job and attempt (job ids contain '-' themselves, the
// attempt is the part after the last one). False for anything else.
bool ParseFolderName(const std::string& name, std::string* job, long long* attempt) {
  size_t dash = name.rfind('-');
  if (dash == std::string::npos || dash == 0 || dash + 1 == name.size()) return false;
  char* end = nullptr;
  *attempt = std::strtoll(name.c_str() + dash + 1, &end, 10);
  if (*end != '\0' || *attempt <= 0) return false;
  *job = name.substr(0, dash);
  return true;
}

}  // namespace

int RemoveDeliveredJobFolders(
    const std::string& jobs_dir, const std::string& keep,
    const std::function<std::string(const std::string& job, long long attempt)>& spool_path) {
  std::error_code ec;
  int removed = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(jobs_dir, ec)) {
    std::string name = entry.path().filename().string();
    std::string job;
    long long attempt = 0;
    if (name == keep || !entry.is_directory(ec) || !ParseFolderName(name, &job, &attempt)) continue;
    if (fs::exists(spool_path(job, attempt), ec)) continue;  // records still to deliver
    if (fs::remove_all(entry.path(), ec) != static_cast<std::uintmax_t>(-1) && !ec) ++removed;
  }
  return removed;
}

}  // namespace yard
