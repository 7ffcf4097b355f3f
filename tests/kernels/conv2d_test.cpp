// cuDNN convolution forward / backward-data / backward-filter against engine/ops/conv2d.h.
#include <catch2/catch.hpp>

#include "engine/core/tensor.h"
#include "engine/ops/conv2d.h"
#include "kernels/cuda/dnn_handle.h"
#include "tests/kernels/gpu_test_util.h"

using namespace nnr;
using nnr::test::DeviceArray;

namespace {

// fp32 convolution with patches of ≤ 5·5·5 = 125 terms (forward / filter sums over up to
// N·Ho·Wo = 257·81 terms); cuDNN's algorithm (implicit GEMM, Winograd or FFT without tensor cores)
// sums in another order. Winograd/FFT transforms cost a few more ulps than direct sums, so
// 1e-4 relative Frobenius error is the bound; TF32 (~1e-3) or a wrong layout (O(1)) fail it.
constexpr double kConvRelFrobenius = 1e-4;

struct ConvCase {
  int64_t c, h, w, o, kh, kw, stride, padding;
};

}  // namespace

TEST_CASE("cuDNN convolution matches the CPU forward, backward-data and backward-filter", "[cuda][conv2d]") {
  test::Stream stream;
  kernels::DnnHandle dnn(stream);
  Rng rng(61);
  const std::vector<ConvCase> cases{{1, 9, 7, 1, 3, 3, 1, 0}, {3, 9, 7, 7, 3, 3, 1, 1}, {5, 11, 9, 3, 5, 3, 2, 2},
                                    {3, 8, 8, 5, 1, 1, 1, 0}, {5, 9, 9, 7, 3, 3, 2, 1}};
  for (const int64_t n : {int64_t{1}, int64_t{31}, int64_t{257}})
    for (const ConvCase& cc : cases) {
      const Shape xs{n, cc.c, cc.h, cc.w}, ws{cc.o, cc.c, cc.kh, cc.kw};
      const Conv2dGeometry g{cc.stride, cc.padding};
      const Shape ys = conv2d_output_shape(xs, ws, g);
      INFO("x " << shape_to_string(xs) << " w " << shape_to_string(ws) << " stride " << cc.stride << " padding "
                << cc.padding);
      kernels::ConvShape s;
      s.n = n;
      s.c = cc.c;
      s.h = cc.h;
      s.w = cc.w;
      s.o = cc.o;
      s.kh = cc.kh;
      s.kw = cc.kw;
      s.stride = cc.stride;
      s.padding = cc.padding;
      REQUIRE(s.out_h() == ys[2]);
      REQUIRE(s.out_w() == ys[3]);

      const auto x = test::random_normal(static_cast<size_t>(shape_numel(xs)), rng);
      const auto w = test::random_normal(static_cast<size_t>(shape_numel(ws)), rng);
      const auto dy = test::random_normal(static_cast<size_t>(shape_numel(ys)), rng);
      const auto dw0 = test::random_normal(static_cast<size_t>(shape_numel(ws)), rng);
      const Tensor tx = Tensor::from_vector(xs, x), tw = Tensor::from_vector(ws, w), tdy = Tensor::from_vector(ys, dy);
      Tensor y = Tensor::empty(ys), dx = Tensor::empty(xs), dw = Tensor::from_vector(ws, dw0);
      conv2d_forward(tx, tw, nullptr, g, y);
      conv2d_backward_data(tdy, tw, g, dx);
      conv2d_backward_filter(tx, tdy, g, nullptr, dw);  // accumulates into dw0

      DeviceArray<float> d_x(x, stream), d_w(w, stream), d_dy(dy, stream), d_y(dy.size(), stream),
          d_dx(x.size(), stream), d_dw(dw0, stream), d_dw_fresh(w.size(), stream);
      dnn.conv2d_forward(d_x.get(), d_w.get(), s, d_y.get());
      REQUIRE(test::relative_frobenius(d_y.download(), y.to_vector()) <= kConvRelFrobenius);
      dnn.conv2d_backward_data(d_dy.get(), d_w.get(), s, d_dx.get());
      REQUIRE(test::relative_frobenius(d_dx.download(), dx.to_vector()) <= kConvRelFrobenius);
      dnn.conv2d_backward_filter(d_x.get(), d_dy.get(), s, d_dw.get(), true);
      REQUIRE(test::relative_frobenius(d_dw.download(), dw.to_vector()) <= kConvRelFrobenius);
      // Overwriting (accumulate = false) into a NaN-poisoned buffer gives the gradient alone.
      dnn.conv2d_backward_filter(d_x.get(), d_dy.get(), s, d_dw_fresh.get(), false);
      auto fresh = dw.to_vector();
      for (size_t i = 0; i < fresh.size(); ++i) fresh[i] -= dw0[i];
      REQUIRE(test::relative_frobenius(d_dw_fresh.download(), fresh) <= kConvRelFrobenius);

      // Steady state: running the same shape again plans nothing and allocates no workspace.
      const int64_t plans = dnn.plans_cached(), allocations = dnn.workspace_allocations();
      dnn.conv2d_forward(d_x.get(), d_w.get(), s, d_y.get());
      dnn.conv2d_backward_data(d_dy.get(), d_w.get(), s, d_dx.get());
      dnn.conv2d_backward_filter(d_x.get(), d_dy.get(), s, d_dw.get(), true);
      stream.sync();
      REQUIRE(dnn.plans_cached() == plans);
      REQUIRE(dnn.workspace_allocations() == allocations);
    }
}

// A shape cuDNN cannot describe (a batch beyond int) is rejected before anything runs, and the
// per-shape plan cache keeps no empty entry for it.
TEST_CASE("a rejected convolution shape leaves the plan cache unchanged", "[cuda][conv2d]") {
  test::Stream stream;
  kernels::DnnHandle dnn(stream);
  kernels::ConvShape s;
  s.n = int64_t{1} << 31;
  s.c = 1;
  s.h = s.w = 3;
  s.o = 1;
  s.kh = s.kw = 3;
  REQUIRE(dnn.plans_cached() == 0);
  REQUIRE_THROWS_AS(dnn.conv2d_forward(nullptr, nullptr, s, nullptr), InvalidArgument);
  REQUIRE(dnn.plans_cached() == 0);
  REQUIRE_THROWS_AS(dnn.conv2d_backward_filter(nullptr, nullptr, s, nullptr, true), InvalidArgument);
  REQUIRE(dnn.plans_cached() == 0);
}
