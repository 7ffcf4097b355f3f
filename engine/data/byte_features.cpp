#include "engine/data/byte_features.h"

namespace nnr {

void decode_bytes(const uint8_t* in, int64_t n, float divisor, float* out) {
  for (int64_t k = 0; k < n; ++k) out[k] = static_cast<float>(in[k]) / divisor;
}

Tensor decode_bytes(const ByteFeatures& features) {
  Tensor t = Tensor::empty(features.shape);
  const int64_t n = static_cast<int64_t>(features.values.size());
  if (n) decode_bytes(features.values.data(), n, features.divisor, t.data());
  return t;
}

}  // namespace nnr
