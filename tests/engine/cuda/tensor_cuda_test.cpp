// CUDA tensors and the dispatched ops against the same calls on CPU tensors.
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <vector>

#include "tests/engine/cuda/cuda_test_util.h"
#include "engine/core/context.h"
#include "engine/core/device_copy.h"
#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "engine/core/tensor.h"
#include "engine/data/batcher.h"
#include "engine/nn/conv2d.h"
#include "engine/nn/linear.h"
#include "engine/ops/conv2d.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/gemm.h"
#include "engine/ops/max_pool.h"
#include "engine/ops/softmax_cross_entropy.h"

using namespace nnr;
using nnr::test::relative_frobenius;

namespace {

// A GEMM of depth k sums k fp32 products in another order than Eigen: each entry may differ by
// ~k·2^-24 relative to the sum of |products|; over whole matrices (k ≤ 64) that stays below 1e-5.
constexpr double kGemmRelFrobenius = 1e-5;
// exp on the device (expf) and the host (std::exp) differ by an ulp or two, the softmax divides
// once more: a few ulps of each probability and of the loss.
constexpr double kSoftmaxRel = 1e-6, kSoftmaxAbs = 1e-7;
// Per-channel sums in double rounded once to float: equal, or one ulp apart after a double tie.
constexpr double kBiasGradRel = 1e-6;
// cuDNN may pick Winograd or FFT (no tensor cores, no TF32): a few ulps more than direct sums, as
// in tests/kernels/conv2d_test.cpp; TF32 (~1e-3) or a wrong layout (O(1)) fail it.
constexpr double kConvRelFrobenius = 1e-4;

Tensor random_tensor(Shape shape, Rng& rng) {
  Tensor t(std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<float>(rng.normal());
  return t;
}

void require_close(const Tensor& got, const Tensor& want, double rel, double abs, const char* what) {
  REQUIRE(got.shape() == want.shape());
  int64_t bad = 0;
  for (int64_t i = 0; i < want.numel(); ++i)
    if (!(std::fabs(static_cast<double>(got[i]) - want[i]) <= rel * std::fabs(want[i]) + abs)) ++bad;
  INFO(what << ": " << bad << " of " << want.numel() << " entries outside rel " << rel << " abs " << abs);
  REQUIRE(bad == 0);
}

}  // namespace

TEST_CASE("cuda tensors round-trip bit-exactly and refuse host access", "[cuda][tensor]") {
  Context ctx;
  Rng rng(1);
  Tensor host = random_tensor({3, 5, 7}, rng);
  Tensor dev = host.to(Device::CUDA, ctx);
  REQUIRE(dev.device() == Device::CUDA);
  REQUIRE(dev.context() == &ctx);
  REQUIRE(dev.shape() == host.shape());
  REQUIRE(dev.to_cpu().to_vector() == host.to_vector());

  Tensor copy = dev.clone();  // a device-to-device copy, independent of its source
  dev.zero();
  REQUIRE(copy.to_cpu().to_vector() == host.to_vector());
  REQUIRE(dev.to_cpu().to_vector() == std::vector<float>(static_cast<size_t>(host.numel()), 0.0f));
  REQUIRE(Tensor({4, 4}, Placement::cuda(ctx)).to_cpu().to_vector() == std::vector<float>(16, 0.0f));

  REQUIRE_THROWS_WITH(dev[0], Catch::Contains("to_cpu()"));
  REQUIRE_THROWS_WITH(dev.to_vector(), Catch::Contains("is on cuda"));
  REQUIRE_THROWS_AS(dev.fill(1.0f), Error);

  Tensor empty = Tensor({0, 3}).to(Device::CUDA, ctx);  // n = 0 allocates and copies nothing
  REQUIRE(empty.numel() == 0);
  REQUIRE(empty.to_cpu().shape() == Shape{0, 3});
}

TEST_CASE("ops refuse tensors on two devices and name ops with no cuda path", "[cuda][dispatch]") {
  Context ctx;
  Tensor a({2, 3}), b({3, 4});
  Tensor c = Tensor({2, 4}).to(Device::CUDA, ctx);
  REQUIRE_THROWS_WITH(gemm(a, false, b, false, c), Catch::Contains("[gemm] C is on cuda"));
  REQUIRE_THROWS_WITH(gather_rows(c, {0}), Catch::Contains("[gather_rows] not implemented on CUDA"));
}

// A layer's backward with Rows masks on weight and bias (the bandit's neuron / filter selection):
// gather the open channels of dy, a compact GEMM or cuDNN call, scatter-add into grad. The CPU runs
// the same gather, a GEMM or im2col sums, and the same scatter: the tolerance is the GEMM's or the
// conv's, and the closed rows must keep their (random, non-zero) previous gradient bit for bit.
TEST_CASE("row-selective Linear and Conv2d gradients on cuda match the cpu", "[cuda][dispatch][mask]") {
  Context ctx;
  Rng rng(5);
  struct Case {
    const char* what;
    std::unique_ptr<Layer> cpu, gpu;
    Shape input;
    double tolerance;
  };
  std::vector<Case> cases;
  {
    Rng a(6), b(6);
    cases.push_back({"Linear(37, 19)", std::make_unique<Linear>(37, 19, true, a), std::make_unique<Linear>(37, 19, true, b),
                     Shape{45, 37}, kGemmRelFrobenius});
  }
#ifdef NNR_WITH_CUDNN
  {
    Rng a(7), b(7);
    cases.push_back({"Conv2d(3, 11, 3, stride 2, padding 1)",
                     std::make_unique<Conv2d>(3, 11, 3, Conv2dGeometry{2, 1}, a),
                     std::make_unique<Conv2d>(3, 11, 3, Conv2dGeometry{2, 1}, b), Shape{5, 3, 9, 7}, kConvRelFrobenius});
  }
#endif
  for (Case& c : cases) {
    const std::vector<int64_t> weight_rows{0, 5, 10}, bias_rows{5, 7};
    const Tensor x = random_tensor(c.input, rng);
    const Tensor x_gpu = x.to(Device::CUDA, ctx);
    const Shape out = c.cpu->output_shape(c.input);
    const Tensor dy = random_tensor(out, rng);
    std::vector<Parameter*> cpu_params = c.cpu->parameters(), gpu_params = c.gpu->parameters();
    for (size_t i = 0; i < cpu_params.size(); ++i) {
      cpu_params[i]->grad = random_tensor(cpu_params[i]->value.shape(), rng);
      gpu_params[i]->grad = cpu_params[i]->grad.to(Device::CUDA, ctx);
      gpu_params[i]->value = gpu_params[i]->value.to(Device::CUDA, ctx);
      cpu_params[i]->mask = gpu_params[i]->mask = UpdateMask::of_rows(i == 0 ? weight_rows : bias_rows);
    }
    const Tensor before_w = cpu_params[0]->grad.clone(), before_b = cpu_params[1]->grad.clone();
    Tensor dx(c.input), dx_gpu = Tensor::empty(c.input, Placement::cuda(ctx));
    const Tensor y = c.cpu->forward(x, true), y_gpu = c.gpu->forward(x_gpu, true);
    for (int pass = 0; pass < 2; ++pass) {  // the second pass reuses the uploaded row indices
      c.cpu->backward(x, y, dy, &dx);
      c.gpu->backward(x_gpu, y_gpu, dy.to(Device::CUDA, ctx), &dx_gpu);
    }
    INFO(c.what);
    REQUIRE(relative_frobenius(dx_gpu.to_cpu(), dx) <= c.tolerance);
    const Tensor dw = gpu_params[0]->grad.to_cpu(), db = gpu_params[1]->grad.to_cpu();
    REQUIRE(relative_frobenius(dw, cpu_params[0]->grad) <= c.tolerance);
    REQUIRE(relative_frobenius(db, cpu_params[1]->grad) <= kBiasGradRel);
    const int64_t row_length = dw.numel() / dw.dim(0);
    for (int64_t j = 0; j < dw.numel(); ++j)
      if (!cpu_params[0]->mask.selects_element(j, row_length)) REQUIRE(dw[j] == before_w[j]);
    for (int64_t j = 0; j < db.numel(); ++j)
      if (!cpu_params[1]->mask.selects_element(j, 1)) REQUIRE(db[j] == before_b[j]);
  }
}

TEST_CASE("dispatched max-pool and dropout on cuda match the cpu's semantics", "[cuda][dispatch]") {
  Context ctx;
  Rng rng(3);
  for (int64_t window : {2, 3}) {
    Tensor x = random_tensor({3, 5, 9, 7}, rng);
    const Shape out = max_pool2d_output_shape(x.shape(), window, 2);
    Tensor y(out), dy_out = Tensor::empty(out, Placement::cuda(ctx));
    MaxPoolArgmax cpu_argmax, gpu_argmax;
    max_pool2d_forward(x, window, 2, y, cpu_argmax);
    max_pool2d_forward(x.to(Device::CUDA, ctx), window, 2, dy_out, gpu_argmax);
    REQUIRE(dy_out.to_cpu().to_vector() == y.to_vector());  // a max is exact
    Tensor g = random_tensor(out, rng), dx(x.shape()), ddx = Tensor::empty(x.shape(), Placement::cuda(ctx));
    max_pool2d_backward(g, cpu_argmax, dx);
    max_pool2d_backward(g.to(Device::CUDA, ctx), gpu_argmax, ddx);
    INFO("window " << window << " stride 2 (overlapping windows add up)");
    // Overlapping windows add up to 4 gradients per entry, maybe in another order (atomics):
    // an ulp or two of the largest term (|g| ~ 1), whatever the sum.
    require_close(ddx.to_cpu(), dx, 1e-6, 1e-6, "max-pool dx");
  }

  // Dropout draws its mask on the device from a hash of (seed, i): not the CPU's mask, so check
  // what both must share: y = x · mask, mask ∈ {0, 1 / (1 − rate)}, the kept share, the backward.
  const float rate = 0.25f;
  Tensor x = random_tensor({64, 129}, rng);
  Tensor y = Tensor::empty(x.shape(), Placement::cuda(ctx)), mask = Tensor::empty(x.shape(), Placement::cuda(ctx));
  dropout_forward(x.to(Device::CUDA, ctx), rate, rng, y, mask);
  const Tensor hy = y.to_cpu(), hm = mask.to_cpu();
  int64_t kept = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    REQUIRE((hm[i] == 0.0f || hm[i] == 1.0f / (1.0f - rate)));
    REQUIRE(hy[i] == x[i] * hm[i]);
    kept += hm[i] != 0.0f;
  }
  // 8256 Bernoulli(0.75) draws: standard deviation 39; ±6 σ never fails by chance.
  REQUIRE(std::abs(kept - 6192) <= 240);
  Tensor g = random_tensor(x.shape(), rng), dx = Tensor::empty(x.shape(), Placement::cuda(ctx));
  dropout_backward(mask, g.to(Device::CUDA, ctx), dx);
  const Tensor hdx = dx.to_cpu();
  for (int64_t i = 0; i < x.numel(); ++i) REQUIRE(hdx[i] == g[i] * hm[i]);
}

#ifdef NNR_WITH_CUDNN
TEST_CASE("dispatched conv2d forward and backward match the cpu", "[cuda][dispatch][conv]") {
  Context ctx;
  Rng rng(4);
  const Conv2dGeometry g{2, 1};
  Tensor x = random_tensor({3, 4, 11, 9}, rng), w = random_tensor({6, 4, 3, 3}, rng), b = random_tensor({6}, rng);
  const Shape out = conv2d_output_shape(x.shape(), w.shape(), g);
  Tensor y(out), dev_y = Tensor::empty(out, Placement::cuda(ctx));
  const Tensor dev_x = x.to(Device::CUDA, ctx), dev_w = w.to(Device::CUDA, ctx), dev_b = b.to(Device::CUDA, ctx);
  conv2d_forward(x, w, &b, g, y);
  conv2d_forward(dev_x, dev_w, &dev_b, g, dev_y);
  REQUIRE(relative_frobenius(dev_y.to_cpu(), y) <= kConvRelFrobenius);

  Tensor dy = random_tensor(out, rng);
  const Tensor dev_dy = dy.to(Device::CUDA, ctx);
  Tensor dx(x.shape()), dev_dx = Tensor::empty(x.shape(), Placement::cuda(ctx));
  conv2d_backward_data(dy, w, g, dx);
  conv2d_backward_data(dev_dy, dev_w, g, dev_dx);
  REQUIRE(relative_frobenius(dev_dx.to_cpu(), dx) <= kConvRelFrobenius);

  Tensor dw = random_tensor(w.shape(), rng);  // the filter gradient accumulates into what is there
  Tensor dev_dw = dw.to(Device::CUDA, ctx);
  conv2d_backward_filter(x, dy, g, nullptr, dw);
  conv2d_backward_filter(dev_x, dev_dy, g, nullptr, dev_dw);
  REQUIRE(relative_frobenius(dev_dw.to_cpu(), dw) <= kConvRelFrobenius);
}
#endif

TEST_CASE("dispatched gemm, bias, relu and softmax cross-entropy match the cpu", "[cuda][dispatch]") {
  Context ctx;
  Rng rng(2);
  const int64_t n = 37, k = 19, m = 11;  // not multiples of a warp or a tile
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Tensor a = random_tensor(ta ? Shape{k, n} : Shape{n, k}, rng);
      Tensor b = random_tensor(tb ? Shape{m, k} : Shape{k, m}, rng);
      Tensor c = random_tensor({n, m}, rng);
      Tensor dc = c.to(Device::CUDA, ctx);
      gemm(a, ta, b, tb, c, 0.5f, 1.0f);
      gemm(a.to(Device::CUDA, ctx), ta, b.to(Device::CUDA, ctx), tb, dc, 0.5f, 1.0f);
      INFO("transpose_a " << ta << " transpose_b " << tb);
      REQUIRE(relative_frobenius(dc.to_cpu(), c) <= kGemmRelFrobenius);
    }

  Tensor y = random_tensor({n, m}, rng), bias = random_tensor({m}, rng);
  Tensor dy_dev = y.to(Device::CUDA, ctx);
  add_bias(y, bias);
  add_bias(dy_dev, bias.to(Device::CUDA, ctx));
  REQUIRE(dy_dev.to_cpu().to_vector() == y.to_vector());  // one fp32 add per entry: exact

  Tensor r(y.shape()), dr = Tensor::empty(y.shape(), Placement::cuda(ctx));
  relu_forward(y, r);
  relu_forward(dy_dev, dr);
  REQUIRE(dr.to_cpu().to_vector() == r.to_vector());
  Tensor g = random_tensor(y.shape(), rng), gx(y.shape()), dgx = Tensor::empty(y.shape(), Placement::cuda(ctx));
  relu_backward(r, g, gx);
  relu_backward(dr, g.to(Device::CUDA, ctx), dgx);
  REQUIRE(dgx.to_cpu().to_vector() == gx.to_vector());

  Tensor db = random_tensor({m}, rng);
  Tensor ddb = db.to(Device::CUDA, ctx);
  bias_backward(g, db, /*accumulate=*/true);
  bias_backward(g.to(Device::CUDA, ctx), ddb, true);
  require_close(ddb.to_cpu(), db, kBiasGradRel, 0.0, "bias gradient");

  std::vector<int32_t> labels(static_cast<size_t>(n));
  for (auto& l : labels) l = static_cast<int32_t>(rng.next_u64() % static_cast<uint64_t>(m));
  Tensor probs(y.shape()), dprobs = Tensor::empty(y.shape(), Placement::cuda(ctx));
  const double loss = softmax_cross_entropy_forward(y, labels, probs);
  const double dloss = softmax_cross_entropy_forward(dy_dev, labels, dprobs);
  REQUIRE(std::fabs(dloss - loss) <= kSoftmaxRel * std::fabs(loss) + kSoftmaxAbs);
  require_close(dprobs.to_cpu(), probs, kSoftmaxRel, kSoftmaxAbs, "probabilities");
  Tensor dl(y.shape()), ddl = Tensor::empty(y.shape(), Placement::cuda(ctx));
  softmax_cross_entropy_backward(probs, labels, 1.0f / n, dl);
  softmax_cross_entropy_backward(dprobs, labels, 1.0f / n, ddl);
  require_close(ddl.to_cpu(), dl, kSoftmaxRel, kSoftmaxAbs, "dlogits");

  std::vector<int32_t> bad = labels;
  bad[3] = static_cast<int32_t>(m);  // validated on the host before any upload
  REQUIRE_THROWS_AS(softmax_cross_entropy_forward(dy_dev, bad, dprobs), InvalidArgument);
}

TEST_CASE("DeviceCopy uploads a host list once and again only when it changes", "[cuda][device_copy]") {
  Context ctx;
  DeviceCopy<int32_t> copy;
  const std::vector<int32_t> a{3, 1, 4, 1, 5}, b{2, 7, 1, 8, 2, 8, 1};
  auto read_back = [&](const int32_t* device, size_t n) {
    std::vector<int32_t> host(n);
    ctx.download(host.data(), device, n * sizeof(int32_t));
    return host;
  };
  const int32_t* first = copy.on(Placement::cuda(ctx), a);
  REQUIRE(read_back(first, a.size()) == a);
  REQUIRE(copy.on(Placement::cuda(ctx), a) == first);  // unchanged: the same block, no new upload
  const int32_t* second = copy.on(Placement::cuda(ctx), b);  // longer: a new block
  REQUIRE(read_back(second, b.size()) == b);
  REQUIRE(read_back(copy.on(Placement::cuda(ctx), a), a.size()) == a);  // shorter: fits, uploaded again
  REQUIRE(copy.on(Placement::cpu(), a) == a.data());
}
