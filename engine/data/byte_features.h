#pragma once
// Features of an 8-bit source (IDX images, uint8 NPY) kept as their bytes, a quarter of the memory
// of floats, and converted when a batch or a sample is read: value = float(byte) / divisor, bit for
// bit the float an eager conversion stores.
#include <array>
#include <cstdint>
#include <vector>

#include "engine/core/tensor.h"

namespace nnr {

struct ByteFeatures {
  Shape shape;                  // [N, ...]
  std::vector<uint8_t> values;  // shape_numel(shape) bytes, C order
  float divisor = 255.0f;
};

// out[k] = static_cast<float>(in[k]) / divisor for k in [0, n), through a table of the 256 quotients
// (built once per decoder, so decoding many rows costs one lookup per value).
class ByteDecoder {
 public:
  explicit ByteDecoder(float divisor);
  void operator()(const uint8_t* in, int64_t n, float* out) const {
    for (int64_t k = 0; k < n; ++k) out[k] = table_[in[k]];
  }

 private:
  std::array<float, 256> table_;
};

void decode_bytes(const uint8_t* in, int64_t n, float divisor, float* out);

// The whole array as a float tensor of the same shape.
Tensor decode_bytes(const ByteFeatures& features);

}  // namespace nnr
