#include "engine/ops/gather.h"

#include "engine/core/backend.h"
#include "engine/core/error.h"
#include "engine/ops/elementwise.h"

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
  backend_of(src).gather_channels(src.data(), v.outer, v.channels, v.inner, rows, count, dst.data());
}

void scatter_channels(const Tensor& src, const int64_t* rows, Tensor& dst) {
  require_placement(dst, src.placement(), "scatter_channels", "dst");
  Shape expected = dst.shape();
  if (expected.size() >= 2) expected[1] = src.rank() >= 2 ? src.dim(1) : -1;
  if (dst.rank() < 2 || src.shape() != expected)
    throw InvalidArgument("[scatter_channels] cannot scatter " + shape_to_string(src.shape()) +
                          " into the channels of " + shape_to_string(dst.shape()));
  const AxisView v = axis1_view(dst);
  const int64_t count = src.dim(1);
  backend_of(src).scatter_channels(src.data(), v.outer, count, v.inner, rows, v.channels, dst.data());
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
  backend_of(src).scatter_add_rows(src.data(), count, row_length, rows, dst.data());
}

void bias_backward_rows(const Tensor& dy, const std::vector<int64_t>& rows, RowIndex& index, Tensor& db) {
  require_placement(db, dy.placement(), "bias_backward_rows", "db");
  if (dy.rank() < 2 || db.shape() != Shape{dy.dim(1)})
    throw InvalidArgument("[bias_backward_rows] bias gradient " + shape_to_string(db.shape()) +
                          " does not fit the channels of " + shape_to_string(dy.shape()));
  const int64_t open = static_cast<int64_t>(rows.size());
  if (open == 0) return;
  const AxisView v = axis1_view(dy);
  backend_of(dy).bias_backward_rows(dy.data(), db.data(), v.outer, v.channels, v.inner, index.on(dy.placement(), rows),
                                    open);
}

}  // namespace nnr
