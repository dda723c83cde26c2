// OutputLog: the bytes of jobs' output events, one append-only file per job
// (<dir>/<job>.out), referenced from the events table by offset and length
// (docs/store.md, version 6). Output bytes are the bulk of what a job sends;
// written once here, they no longer pass through SQLite's WAL and its
// checkpoint (two writes and an fdatasync per 4 MiB before).
//
// Durability is the store's: a write reaches the OS cache before the rows
// that name it are committed, so a killed server loses nothing it
// acknowledged; bytes past the last committed row are garbage that the
// next write overwrites. Thread-compatible: the store calls it under its
// own mutex.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace yard {

class OutputLog {
 public:
  explicit OutputLog(std::string dir) : dir_(std::move(dir)) {}

  // Writes `pieces` one after another from `offset` of the job's file
  // (created, with its folder, on first use).
  Status Write(const std::string& job_id, uint64_t offset,
               const std::vector<std::string_view>& pieces) const;

  // An open job file for reads; closes itself.
  class Reader {
   public:
    Reader() = default;
    Reader(Reader&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }
    Reader& operator=(Reader&&) = delete;
    ~Reader();
    // `size` bytes from `offset` into `*out`. Internal when the file ends
    // before them (a power cut after their rows were committed): `*out`
    // then holds the bytes that are there.
    Status Read(uint64_t offset, size_t size, std::string* out) const;

   private:
    friend class OutputLog;
    int fd_ = -1;
    std::string path_;
  };
  // NotFound when the job has no file.
  StatusOr<Reader> Open(const std::string& job_id) const;

  std::string PathFor(const std::string& job_id) const;

 private:
  const std::string dir_;
};

}  // namespace yard
