#pragma once
// IDX, the format of MNIST and Fashion-MNIST: magic 00 00 <type> <rank>, then <rank> big-endian
// uint32 dimensions, then the values in C order. nnr reads unsigned-byte IDX (type 0x08), raw
// or gzip-compressed: images become float32 in [0, 1] (pixel / 255), labels int32.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/tensor.h"
#include "engine/data/byte_features.h"

namespace nnr {

// A decoded unsigned-byte IDX file: its dimensions and its values.
struct IdxArray {
  Shape dims;
  std::vector<uint8_t> values;
};

// Reads any unsigned-byte IDX file of rank 1..4. Errors name the file and say what is wrong:
// missing, wrong magic, unsupported value type, zero rank, truncated or trailing data.
IdxArray read_idx(const std::string& path);

// Images: rank-3 [N, H, W] files become [N, 1, H, W] (NCHW with one channel); rank-2 [N, D] and
// rank-4 files keep their shape. Values are pixel / 255.
Tensor load_idx_images(const std::string& path);
// The same images kept as bytes (divisor 255): what load_dataset stores.
ByteFeatures load_idx_image_bytes(const std::string& path);

// Labels: a rank-1 file. When num_classes > 0, every label must be below it.
std::vector<int32_t> load_idx_labels(const std::string& path, int32_t num_classes = 0);

// Writes an unsigned-byte IDX file (raw, not compressed): for tests and tools.
void save_idx(const std::string& path, const Shape& dims, const std::vector<uint8_t>& values);

}  // namespace nnr
