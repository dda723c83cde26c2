// ChunkUploader: stores a file's content on the server as content-addressed
// chunks, sending only those the server lacks.
//
// The file is read once. Chunks are cut and hashed on the calling thread; in
// groups of a few MiB the server is asked which it lacks, and those are PUT
// by a few worker threads while the next group is being cut. Memory stays
// bounded (one group plus a bounded queue), whatever the file's size.
#pragma once

#include <string>

#include "agent/stop_signal.h"
#include "client/http_client.h"
#include "common/chunker.h"
#include "common/manifest.h"
#include "common/status.h"

namespace yard {

struct ChunkUploaderOptions {
  ChunkerParams chunker;
  int concurrency = 3;            // PUTs in flight
  size_t group_bytes = 8 << 20;   // chunk bytes per /v1/blobs/missing call
  size_t queue_bytes = 16 << 20;  // chunk bytes waiting for a worker
};

// Thread-safe (each Upload is independent).
class ChunkUploader {
 public:
  // `http` and `stop` must outlive the uploader.
  ChunkUploader(const HttpClient* http, const StopSignal* stop, ChunkUploaderOptions options = {});

  // Uploads the chunks of the file at `path` that the server lacks and
  // returns the file's entry: size and chunks filled in, `path` empty and
  // `mode` 0644 (the caller knows better). Unavailable replies are retried
  // until `stop` fires (then Cancelled); other errors are returned.
  StatusOr<FileEntry> Upload(const std::string& path) const;

 private:
  const HttpClient* http_;
  const StopSignal* stop_;
  ChunkUploaderOptions options_;
};

}  // namespace yard
