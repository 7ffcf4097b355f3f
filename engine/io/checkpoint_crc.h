#pragma once
// The CRC32 values nnr writes into a checkpoint's metadata, shared by save and load so both
// compute exactly the same thing.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/core/tensor.h"

namespace nnr {

// zlib's CRC32 of `size` bytes as 8 lowercase hex digits.
std::string crc32_hex(const void* data, size_t size);

struct TensorEntry {
  std::string name;
  std::string dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;  // offsets in the data area
};

// CRC32 over a canonical text of the header: every entry (sorted by name) and every metadata
// pair except nnr.header_crc32 itself (sorted by key), each field length-prefixed so no two
// different headers give the same text.
std::string header_crc32_hex(const std::vector<TensorEntry>& entries,
                             const std::map<std::string, std::string>& metadata);

}  // namespace nnr
