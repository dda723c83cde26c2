// Copying file ranges without bringing the bytes into this process: a
// reflink where the filesystem can share blocks (btrfs, XFS: FICLONE, or
// copy_file_range, which clones there too), else the kernel's copy
// (copy_file_range), else read and write. Used to place chunks that are
// already on this machine (a blob store's files) into job folders.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace yard {

// How the bytes got there.
enum class CopyWay { kClone, kKernel, kReadWrite };

// Which ways may be tried (tests switch the better ones off to exercise the
// fallbacks; a filesystem without them falls back by itself).
struct CopyWays {
  bool clone = true;
  bool kernel = true;
};

// Copies `size` bytes of `src` from `src_off` to `dst` at `dst_off`. A clone
// (FICLONE) is tried only for a whole file into an empty one (offsets 0,
// `size` the size of `src`, `dst` empty): it shares blocks copy-on-write, so
// a write to either file never shows in the other. Fails (naming `what`)
// when `src` ends early or a write fails.
StatusOr<CopyWay> CopyRange(int src, uint64_t src_off, int dst, uint64_t dst_off, uint64_t size,
                            const std::string& what, CopyWays ways = {});

const char* CopyWayName(CopyWay way);

}  // namespace yard
