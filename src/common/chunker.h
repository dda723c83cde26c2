// Content-defined chunking (FastCDC-style gear hash).
//
// Files are cut at content-defined boundaries so that an insertion or a
// change of a few bytes changes only the chunks around it: a 1-byte edit in a
// 20 MiB file re-sends at most two chunks. Chunks are named by their SHA-256.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace yard {

struct ChunkerParams {
  size_t min_size = 256 * 1024;
  size_t avg_size = 1024 * 1024;  // must be a power of two
  size_t max_size = 4 * 1024 * 1024;
};

struct ChunkRef {
  std::string hash;  // hex sha256 of the chunk's bytes
  uint64_t size = 0;
  bool operator==(const ChunkRef&) const = default;
};

// Returns the length of the first chunk of `data` (<= data.size()).
// `at_eof` says whether more data follows; when false and no boundary is found
// before max_size, returns 0 meaning "need more data".
// REQUIRES: 64 <= min_size <= avg_size <= max_size, avg_size a power of two.
size_t NextChunkBoundary(std::string_view data, const ChunkerParams& params, bool at_eof);

// Called for each chunk in file order with its reference and its bytes, on
// the calling thread (hashing runs on a helper thread meanwhile).
// A non-OK return stops chunking and is returned by the caller.
using ChunkVisitor = std::function<Status(const ChunkRef&, std::string_view bytes)>;

// Splits the whole of `data` into chunks. InvalidArgument for bad params.
Status ChunkBuffer(std::string_view data, const ChunkerParams& params, const ChunkVisitor& visit);

// Splits `prefix` followed by `data` into exactly the chunks ChunkBuffer
// would cut from the two joined, without joining them: only the chunks that
// start in `prefix` are copied (into one buffer of prefix + max_size bytes);
// the rest are visited as views into `data`. For a file made of a small
// header and a large buffer in memory (a .npy of an array).
Status ChunkPrefixed(std::string_view prefix, std::string_view data, const ChunkerParams& params,
                     const ChunkVisitor& visit);

// Reads the file at `path` in large blocks and splits it into chunks.
Status ChunkFile(const std::string& path, const ChunkerParams& params, const ChunkVisitor& visit);

}  // namespace yard
