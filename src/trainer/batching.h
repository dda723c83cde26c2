// How an epoch is cut into batches and a batch into per-device shards.
// Pure functions: the same arguments give the same result on every machine,
// which is what makes a resumed run repeat an uninterrupted one.
#pragma once

#include <cstdint>
#include <vector>

namespace yard::trainer {

// Sizes of `parts` shards of `total` samples, as even as possible, larger
// ones first: (5, 2) -> {3, 2}; (1, 2) -> {1, 0}. REQUIRES: parts >= 1.
std::vector<int64_t> SplitEvenly(int64_t total, int parts);

// The order in which epoch `epoch` visits `n` samples: a permutation of
// 0..n-1 drawn from (seed, epoch) only (Fisher-Yates over splitmix64), or
// the identity when !shuffle.
std::vector<int64_t> EpochOrder(int64_t n, uint64_t seed, int64_t epoch, bool shuffle);

}  // namespace yard::trainer
