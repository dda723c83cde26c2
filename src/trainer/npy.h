// Reading NumPy .npy files (format versions 1.0, 2.0 and 3.0), as written by
// numpy.save. Only what training data needs is accepted: little-endian
// float32, float64, int32 and int64 arrays in C order with at least one
// dimension. Anything else is refused with a message naming the file and
// what was found. See
// https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace yard::trainer {

enum class NpyDType { kFloat32, kFloat64, kInt32, kInt64 };

// "float32", "int64", ...
const char* NpyDTypeName(NpyDType t);
size_t NpyItemSize(NpyDType t);

struct NpyArray {
  NpyDType dtype = NpyDType::kFloat32;
  std::vector<int64_t> shape;  // at least one dimension
  std::vector<char> data;      // shape's product * item size bytes, C order

  int64_t rows() const { return shape.empty() ? 0 : shape[0]; }
  int64_t elements() const;
};

// Parses a whole .npy file held in memory. `name` is used in messages.
// Errors: kInvalidArgument.
StatusOr<NpyArray> ParseNpy(std::string_view bytes, const std::string& name);

// Reads and parses `path`. Errors: kNotFound for a missing file,
// kInvalidArgument for a malformed or unsupported one.
StatusOr<NpyArray> ReadNpy(const std::string& path);

// Serializes `a` as a version 1.0 .npy file (used by tests and tools).
std::string EncodeNpy(const NpyArray& a);

}  // namespace yard::trainer
