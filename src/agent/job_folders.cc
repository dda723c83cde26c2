#include "agent/job_folders.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <set>
#include <system_error>
#include <vector>

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

const char* const kAttemptSubfolders[] = {"work", "checkpoints", "logs", "outputs"};

bool PlainFolder(const std::string& path, mode_t mode) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == mode;
}

// Removes what is in `dir` (a real folder: nothing below it is followed),
// keeping the names of `keep` (emptied, not removed).
bool EmptyFolder(const fs::path& dir, const std::set<std::string>& keep) {
  std::error_code ec;
  std::vector<fs::path> children;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) children.push_back(e.path());
  if (ec) return false;
  for (const fs::path& child : children) {
    if (keep.count(child.filename().string())) {
      if (!EmptyFolder(child, {})) return false;
    } else if (fs::remove_all(child, ec) == static_cast<std::uintmax_t>(-1) || ec) {
      return false;
    }
  }
  return true;
}

// `folder` emptied and renamed to a free spare name, as job_folders.h
// says; false when it is not plain or no name is free (the caller removes
// it then).
bool MakeSpare(const std::string& jobs_dir, const fs::path& folder) {
  std::string spare;
  struct stat st;
  for (const char* name : kSpareJobFolders) {
    std::string path = jobs_dir + "/" + name;
    if (::lstat(path.c_str(), &st) != 0) {
      spare = path;
      break;
    }
  }
  if (spare.empty() || ::stat(jobs_dir.c_str(), &st) != 0) return false;
  mode_t mode = st.st_mode & 07777;
  if (!PlainFolder(folder.string(), mode)) return false;
  std::set<std::string> keep;
  for (const char* sub : kAttemptSubfolders) {
    if (!PlainFolder((folder / sub).string(), mode)) return false;
    keep.insert(sub);
  }
  if (!EmptyFolder(folder, keep)) return false;
  return ::renameat2(AT_FDCWD, folder.c_str(), AT_FDCWD, spare.c_str(), RENAME_NOREPLACE) == 0;
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
    if (MakeSpare(jobs_dir, entry.path())) {
      ++removed;
      continue;
    }
    if (fs::remove_all(entry.path(), ec) != static_cast<std::uintmax_t>(-1) && !ec) ++removed;
  }
  return removed;
}

}  // namespace yard
