#include "engine/ops/conv2d.h"

#include "engine/core/backend.h"
#include "engine/core/error.h"

namespace nnr {
namespace {

kernels::ConvShape conv_shape_of(const Shape& x, const Shape& w, Conv2dGeometry g) {
  kernels::ConvShape s;
  s.n = x[0], s.c = x[1], s.h = x[2], s.w = x[3];
  s.o = w[0], s.kh = w[2], s.kw = w[3];
  s.stride = g.stride, s.padding = g.padding;
  return s;
}

}  // namespace

Shape conv2d_output_shape(const Shape& x, const Shape& w, Conv2dGeometry g) {
  if (x.size() != 4 || w.size() != 4)
    throw InvalidArgument("[conv2d] expected [N, C, H, W] input and [O, C, KH, KW] weight, got " +
                          shape_to_string(x) + " and " + shape_to_string(w));
  if (x[1] != w[1])
    throw InvalidArgument("[conv2d] input has " + std::to_string(x[1]) + " channels, weight expects " +
                          std::to_string(w[1]));
  if (g.stride < 1 || g.padding < 0) throw InvalidArgument("[conv2d] stride must be >= 1 and padding >= 0");
  const int64_t hp = x[2] + 2 * g.padding, wp = x[3] + 2 * g.padding;
  if (hp < w[2] || wp < w[3])
    throw InvalidArgument("[conv2d] kernel " + std::to_string(w[2]) + "x" + std::to_string(w[3]) +
                          " larger than padded input " + std::to_string(hp) + "x" + std::to_string(wp));
  return {x[0], w[0], (hp - w[2]) / g.stride + 1, (wp - w[3]) / g.stride + 1};
}

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Conv2dGeometry g, Tensor& y) {
  require_placement(w, x.placement(), "conv2d", "weight");
  require_placement(y, x.placement(), "conv2d", "output");
  if (bias) require_placement(*bias, x.placement(), "conv2d", "bias");
  require_shape(y, conv2d_output_shape(x.shape(), w.shape(), g), "conv2d", "output");
  if (bias) require_shape(*bias, {w.dim(0)}, "conv2d", "bias");
  if (y.numel() == 0) return;
  backend_of(x).conv2d_forward(x.data(), w.data(), bias ? bias->data() : nullptr,
                               conv_shape_of(x.shape(), w.shape(), g), y.data());
}

void conv2d_backward_data(const Tensor& dy, const Tensor& w, Conv2dGeometry g, Tensor& dx) {
  require_placement(w, dy.placement(), "conv2d_backward_data", "weight");
  require_placement(dx, dy.placement(), "conv2d_backward_data", "dx");
  require_shape(dy, conv2d_output_shape(dx.shape(), w.shape(), g), "conv2d_backward_data", "output gradient");
  if (dx.numel() == 0) return;
  if (dy.numel() == 0) {
    dx.zero();
    return;
  }
  backend_of(dy).conv2d_backward_data(dy.data(), w.data(), conv_shape_of(dx.shape(), w.shape(), g), dx.data());
}

void conv2d_backward_filter(const Tensor& x, const Tensor& dy, Conv2dGeometry g, const std::vector<int64_t>* rows,
                            Tensor& dw, RowIndex* index) {
  require_placement(dy, x.placement(), "conv2d_backward_filter", "dy");
  require_placement(dw, x.placement(), "conv2d_backward_filter", "dw");
  require_shape(dy, conv2d_output_shape(x.shape(), dw.shape(), g), "conv2d_backward_filter", "output gradient");
  if (dy.numel() == 0 || dw.numel() == 0) return;
  const int64_t open = rows ? static_cast<int64_t>(rows->size()) : dw.dim(0);
  if (open == 0) return;
  // The selected filters' indices where the op runs (a layer's cache keeps them on the device).
  RowIndex local;
  const int64_t* where_rows = rows ? (index ? *index : local).on(x.placement(), *rows) : nullptr;
  backend_of(x).conv2d_backward_filter(x.data(), dy.data(), conv_shape_of(x.shape(), dw.shape(), g), where_rows, open,
                                       dw.data());
}

}  // namespace nnr
