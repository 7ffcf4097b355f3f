#pragma once
// Features of an 8-bit source (IDX images, uint8 NPY) kept as their bytes, a quarter of the memory
// of floats, and converted when a batch or a sample is read: value = float(byte) / divisor, bit for
// bit the float an eager conversion stores.
#include <cstdint>
#include <vector>

#include "engine/core/tensor.h"

namespace nnr {

struct ByteFeatures {
  Shape shape;                  // [N, ...]
  std::vector<uint8_t> values;  // shape_numel(shape) bytes, C order
  float divisor = 255.0f;
};

// out[k] = static_cast<float>(in[k]) / divisor for k in [0, n). A plain division, not a table of
// the 256 quotients: the compiler vectorizes it (widen, convert, divide 16 at a time), twice as fast
// as one dependent lookup per value, and IEEE division gives the table's floats bit for bit.
void decode_bytes(const uint8_t* in, int64_t n, float divisor, float* out);

// The whole array as a float tensor of the same shape.
Tensor decode_bytes(const ByteFeatures& features);

}  // namespace nnr
