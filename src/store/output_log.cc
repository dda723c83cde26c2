#include "store/output_log.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>

#include "common/files.h"

namespace yard {

namespace {

// Job ids are the server's own ("job-3f9a…"); anything else is made safe
// as a file name rather than trusted.
std::string FileNameOf(const std::string& job_id) {
  std::string out;
  for (char c : job_id)
    out.push_back(std::isalnum(static_cast<unsigned char>(c)) || c == '-' ? c : '_');
  return out + ".out";
}

}  // namespace

std::string OutputLog::PathFor(const std::string& job_id) const {
  return dir_ + "/" + FileNameOf(job_id);
}

Status OutputLog::Write(const std::string& job_id, uint64_t offset,
                        const std::vector<std::string_view>& pieces) const {
  std::string path = PathFor(job_id);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0 && errno == ENOENT && ::mkdir(dir_.c_str(), 0700) == 0)
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus("opening output log " + path, dir_);
  std::vector<iovec> iov;
  iov.reserve(pieces.size());
  for (std::string_view p : pieces) iov.push_back({const_cast<char*>(p.data()), p.size()});
  Status s = WriteVectorAll(fd, std::move(iov), offset, "writing output log " + path, dir_);
  ::close(fd);
  return s;
}

StatusOr<OutputLog::Reader> OutputLog::Open(const std::string& job_id) const {
  Reader r;
  r.path_ = PathFor(job_id);
  r.fd_ = ::open(r.path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (r.fd_ < 0 && errno == ENOENT) return NotFound("no output log " + r.path_);
  if (r.fd_ < 0) return ErrnoStatus("opening output log " + r.path_);
  return r;
}

OutputLog::Reader::~Reader() {
  if (fd_ >= 0) ::close(fd_);
}

Status OutputLog::Reader::Read(uint64_t offset, size_t size, std::string* out) const {
  out->resize(size);
  YARD_ASSIGN_OR_RETURN(size_t done,
                        ReadAt(fd_, out->data(), size, offset, "reading output log " + path_));
  if (done == size) return Status::Ok();
  out->resize(done);
  return Internal("output log " + path_ + " ends before the bytes its events name (offset " +
                  std::to_string(offset) + ", " + std::to_string(size) +
                  " bytes): lost in a power cut after they were stored?");
}

}  // namespace yard
