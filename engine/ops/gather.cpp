#include "engine/ops/gather.h"

#include "engine/core/error.h"
#include "engine/ops/elementwise.h"
#ifdef NNR_WITH_CUDA
#include "kernels/gather.h"
#endif

namespace nnr {

namespace {

// src viewed as [outer, channels, inner] around axis 1.
struct AxisView {
  int64_t outer, channels, inner;
};
AxisView axis1_view(const Tensor& t) {
  const int64_t outer = t.dim(0), channels = t.dim(1);
  return {outer, channels, outer * channels != 0 ? t.numel() / (outer * channels) : 0};
}

}  // namespace

void gather_channels(const Tensor& src, const int64_t* rows, int64_t count, Tensor& dst) {
  require_placement(dst, src.placement(), "gather_channels", "dst");
  Shape expected = src.shape();
  if (expected.size() >= 2) expected[1] = count;
  if (src.rank() < 2 || dst.shape() != expected)
    throw InvalidArgument("[gather_channels] cannot gather " + std::to_string(count) + " channels of " +
                          shape_to_string(src.shape()) + " into " + shape_to_string(dst.shape()));
  const AxisView v = axis1_view(src);
  if (src.device() == Device::CUDA) {
#ifdef NNR_WITH_CUDA
    kernels::gather_slices(src.data(), v.outer, v.channels, v.inner, rows, count, dst.data(),
                           src.context()->stream());
    return;
#else
    throw_not_implemented_on_cuda("gather_channels");
#endif
  }
  const float* s = src.data();
  float* d = dst.data();
  for (int64_t o = 0; o < v.outer; ++o)
    for (int64_t r = 0; r < count; ++r) {
      const float* from = s + (o * v.channels + rows[r]) * v.inner;
      float* to = d + (o * count + r) * v.inner;
      for (int64_t p = 0; p < v.inner; ++p) to[p] = from[p];
    }
}

void scatter_add_rows(const Tensor& src, const int64_t* rows, Tensor& dst) {
  require_placement(dst, src.placement(), "scatter_add_rows", "dst");
  const bool same_trailing = src.rank() == dst.rank() && src.rank() >= 1 &&
                             Shape(src.shape().begin() + 1, src.shape().end()) ==
                                 Shape(dst.shape().begin() + 1, dst.shape().end());
  if (!same_trailing)
    throw InvalidArgument("[scatter_add_rows] rows of " + shape_to_string(src.shape()) + " do not fit rows of " +
                          shape_to_string(dst.shape()));
  const int64_t count = src.dim(0);
  const int64_t row_length = count ? src.numel() / count : 0;
  if (src.device() == Device::CUDA) {
#ifdef NNR_WITH_CUDA
    kernels::scatter_add_rows(src.data(), count, row_length, rows, dst.data(), src.context()->stream());
    return;
#else
    throw_not_implemented_on_cuda("scatter_add_rows");
#endif
  }
  const float* s = src.data();
  float* d = dst.data();
  for (int64_t r = 0; r < count; ++r) {
    float* to = d + rows[r] * row_length;
    const float* from = s + r * row_length;
    for (int64_t k = 0; k < row_length; ++k) to[k] += from[k];
  }
}

void bias_backward_rows(const Tensor& dy, const std::vector<int64_t>& rows, RowIndex& index, Tensor& db) {
  const int64_t open = static_cast<int64_t>(rows.size());
  if (open == 0) return;
  const int64_t* where_rows = index.on(dy.placement(), rows);
  Shape compact = dy.shape();
  compact[1] = open;
  Tensor dy_open = Tensor::empty(compact, dy.placement());
  gather_channels(dy, where_rows, open, dy_open);
  Tensor db_open = Tensor::empty({open}, dy.placement());
  bias_backward(dy_open, db_open, /*accumulate=*/false);
  scatter_add_rows(db_open, where_rows, db);
}

}  // namespace nnr
