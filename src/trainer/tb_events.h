// TensorBoard event files written without TensorFlow or protobuf: the few
// fields of tensorflow.Event and Summary that scalars need are encoded by
// hand, and each record is framed as TFRecord:
//
//   uint64 length (little-endian) | uint32 masked_crc32c(length bytes)
//   | data[length] | uint32 masked_crc32c(data)
//
// The first record is Event{wall_time, file_version: "brain.Event:2"}; then
// one Event{wall_time, step, summary{value{tag, simple_value}...}} per call.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace yard::trainer {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
uint32_t Crc32c(std::string_view data);
// TFRecord's mask: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t MaskedCrc32c(std::string_view data);

// One TFRecord-framed record around `data`.
std::string FrameRecord(std::string_view data);

// Serialized tensorflow.Event protos.
std::string EncodeFileVersionEvent(double wall_time);
std::string EncodeScalarsEvent(double wall_time, int64_t step,
                               const std::vector<std::pair<std::string, float>>& scalars);

// Appends events to `<dir>/events.out.tfevents.<unix seconds>.<hostname>`
// (".N" appended if that name is taken). Not thread-safe.
class EventFileWriter {
 public:
  ~EventFileWriter();
  // Creates `dir` if needed and writes the file_version record.
  static StatusOr<std::unique_ptr<EventFileWriter>> Open(const std::string& dir, double wall_time);

  // Writes one event with `scalars` at `step` and flushes it to the OS, so
  // TensorBoard (or the artifact sync) sees each epoch as it ends.
  Status WriteScalars(double wall_time, int64_t step,
                      const std::vector<std::pair<std::string, float>>& scalars);
  const std::string& path() const { return path_; }

 private:
  EventFileWriter(std::FILE* f, std::string path) : file_(f), path_(std::move(path)) {}
  Status Write(std::string_view event);

  std::FILE* file_;
  std::string path_;
};

}  // namespace yard::trainer
