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

// An array's bytes: memory of their own (resize), or a private map of the
// file they were read from (ReadNpy), so that gigabytes of training data are
// neither zero-filled nor copied out of the page cache. Writable either way:
// a write to a mapped array changes this process's copy of the page, never
// the file (MAP_PRIVATE). A mapped file must keep its size while mapped
// (the job's own input: nothing else writes it).
class NpyData {
 public:
  NpyData() = default;
  NpyData(NpyData&& other) noexcept;
  NpyData& operator=(NpyData&& other) noexcept;
  NpyData(const NpyData&) = delete;
  NpyData& operator=(const NpyData&) = delete;
  ~NpyData();

  // Maps `size` bytes of `fd` from `offset` (any offset: the map starts at
  // the page below it). The descriptor may be closed afterwards.
  static StatusOr<NpyData> Map(int fd, uint64_t offset, size_t size);

  // Memory of its own of `n` bytes, zeroed; a mapping is let go.
  void resize(size_t n);
  char* data() { return map_ ? map_data_ : owned_.data(); }
  const char* data() const { return map_ ? map_data_ : owned_.data(); }
  size_t size() const { return map_ ? map_size_ : owned_.size(); }
  bool empty() const { return size() == 0; }
  bool mapped() const { return map_ != nullptr; }
  std::string_view view() const { return {data(), size()}; }
  bool operator==(const NpyData& other) const { return view() == other.view(); }

 private:
  void Unmap();

  std::vector<char> owned_;
  void* map_ = nullptr;  // the whole mapping, from a page boundary
  size_t map_length_ = 0;
  char* map_data_ = nullptr;  // where the array starts in it
  size_t map_size_ = 0;
};

struct NpyArray {
  NpyDType dtype = NpyDType::kFloat32;
  std::vector<int64_t> shape;  // at least one dimension
  NpyData data;                // shape's product * item size bytes, C order

  int64_t rows() const { return shape.empty() ? 0 : shape[0]; }
  int64_t elements() const;
};

// Parses a whole .npy file held in memory. `name` is used in messages.
// Errors: kInvalidArgument.
StatusOr<NpyArray> ParseNpy(std::string_view bytes, const std::string& name);

// Reads and parses `path`: the data is mapped (NpyData), not read; an
// empty array is not mapped. Errors: kNotFound for a missing file,
// kInvalidArgument for a malformed or unsupported one.
StatusOr<NpyArray> ReadNpy(const std::string& path);

// Serializes `a` as a version 1.0 .npy file (used by tests and tools).
std::string EncodeNpy(const NpyArray& a);
// The bytes EncodeNpy writes before the array's data: EncodeNpy(a) is
// NpyHeader(a) followed by a.data.
std::string NpyHeader(const NpyArray& a);

}  // namespace yard::trainer
