#include "agent/job_folders.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
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

// Removes what is in the folder `name` under the open folder `parent` (a
// real folder: O_NOFOLLOW, and nothing below it is followed), keeping the
// names of `keep` (emptied, not removed). Through descriptors, readdir's
// types and unlinkat: a no-op job's folder is emptied after every job, and
// std::filesystem's paths and status calls per entry were most of it.
bool EmptyFolderAt(int parent, const char* name, const std::set<std::string>& keep) {
  int fd = ::openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return false;
  DIR* dir = ::fdopendir(fd);
  if (!dir) {
    ::close(fd);
    return false;
  }
  bool ok = true;
  std::vector<std::string> folders;  // removed whole, after the listing
  while (const dirent* e = ::readdir(dir)) {
    std::string child = e->d_name;
    if (child == "." || child == "..") continue;
    if (keep.count(child)) {
      ok = ok && EmptyFolderAt(fd, child.c_str(), {});
      continue;
    }
    unsigned char type = e->d_type;
    if (type == DT_UNKNOWN) {
      struct stat st;
      if (::fstatat(fd, child.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        ok = false;
        continue;
      }
      type = S_ISDIR(st.st_mode) ? DT_DIR : DT_REG;
    }
    if (type == DT_DIR) {
      folders.push_back(child);
    } else if (::unlinkat(fd, child.c_str(), 0) != 0 && errno != ENOENT) {
      ok = false;
    }
  }
  for (const std::string& folder : folders) {
    ok = ok && EmptyFolderAt(fd, folder.c_str(), {}) &&
         (::unlinkat(fd, folder.c_str(), AT_REMOVEDIR) == 0 || errno == ENOENT);
  }
  ::closedir(dir);
  return ok;
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
  if (!EmptyFolderAt(AT_FDCWD, folder.c_str(), keep)) return false;
  return ::renameat2(AT_FDCWD, folder.c_str(), AT_FDCWD, spare.c_str(), RENAME_NOREPLACE) == 0;
}

}  // namespace

namespace {

// The delivered attempt folder `name` (its spool file gone) made a spare or
// removed. False when it is still needed or could not be removed now.
bool RemoveIfDelivered(const std::string& jobs_dir, const std::string& name,
                       const SpoolPathFn& spool_path) {
  std::string job;
  long long attempt = 0;
  if (!ParseFolderName(name, &job, &attempt)) return false;
  std::error_code ec;
  if (fs::exists(spool_path(job, attempt), ec)) return false;  // records still to deliver
  fs::path folder = fs::path(jobs_dir) / name;
  if (MakeSpare(jobs_dir, folder)) return true;
  return fs::remove_all(folder, ec) != static_cast<std::uintmax_t>(-1) && !ec;
}

// The names of the attempt folders under `jobs_dir` ("<job>-<attempt>").
std::vector<std::string> AttemptFolders(const std::string& jobs_dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(jobs_dir, ec)) {
    std::string name = entry.path().filename().string(), job;
    long long attempt = 0;
    if (entry.is_directory(ec) && ParseFolderName(name, &job, &attempt)) out.push_back(name);
  }
  return out;
}

}  // namespace

int RemoveDeliveredJobFolders(const std::string& jobs_dir, const std::string& keep,
                              const SpoolPathFn& spool_path) {
  int removed = 0;
  for (const std::string& name : AttemptFolders(jobs_dir))
    if (name != keep && RemoveIfDelivered(jobs_dir, name, spool_path)) ++removed;
  return removed;
}

int DeliveredFolderSweeper::Sweep(const std::string& started) {
  if (!listed_) {
    for (std::string& name : AttemptFolders(jobs_dir_)) waiting_.insert(std::move(name));
    listed_ = true;
  }
  int removed = 0;
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    struct stat st;
    bool gone = ::lstat((jobs_dir_ + "/" + *it).c_str(), &st) != 0 && errno == ENOENT;
    if (*it != started && !gone && RemoveIfDelivered(jobs_dir_, *it, spool_path_)) {
      ++removed;
      gone = true;
    }
    it = gone ? waiting_.erase(it) : std::next(it);
  }
  waiting_.insert(started);
  return removed;
}

}  // namespace yard
