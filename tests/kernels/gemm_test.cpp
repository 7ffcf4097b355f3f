// cuBLAS GEMM against the engine's gemm_cpu (Eigen), every transpose combination.
#include <catch2/catch.hpp>

#include "engine/ops/gemm.h"
#include "kernels/cuda/blas_handle.h"
#include "tests/kernels/gpu_test_util.h"

using namespace nnr;
using nnr::test::DeviceArray;

namespace {

// fp32 GEMM with k ≤ 300: both sides accumulate in fp32 in different orders (blocking, FMA),
// errors grow like √k·2^-24 per entry; 1e-4 relative Frobenius error leaves a wide margin and
// would still catch TF32 (10-bit mantissa, ~1e-3) or a wrong transpose (O(1)).
constexpr double kGemmRelFrobenius = 1e-4;

}  // namespace

TEST_CASE("cuBLAS row-major GEMM matches gemm_cpu for every transpose, alpha and beta", "[cuda][gemm]") {
  test::Stream stream;
  kernels::BlasHandle blas(stream);
  Rng rng(51);
  for (const int64_t m : test::awkward_rows())
    for (const int64_t n : {int64_t{1}, int64_t{33}, int64_t{129}})
      for (const int64_t k : {int64_t{1}, int64_t{17}, int64_t{300}})
        for (const bool ta : {false, true})
          for (const bool tb : {false, true})
            for (const float beta : {0.0f, 0.5f}) {
              INFO("m " << m << " n " << n << " k " << k << (ta ? " A^T" : "") << (tb ? " B^T" : "") << " beta " << beta);
              const auto a = test::random_normal(static_cast<size_t>(m * k), rng);
              const auto b = test::random_normal(static_cast<size_t>(k * n), rng);
              const auto c0 = test::random_normal(static_cast<size_t>(m * n), rng);
              const float alpha = 1.5f;
              auto c = c0;
              gemm_cpu(a.data(), ta, b.data(), tb, c.data(), m, n, k, alpha, beta);

              DeviceArray<float> d_a(a, stream), d_b(b, stream), d_c(c0.size(), stream);
              if (beta != 0.0f) d_c.upload(c0);  // with beta = 0, C stays NaN-poisoned and must be ignored
              kernels::gemm(blas, d_a.get(), ta, d_b.get(), tb, d_c.get(), m, n, k, alpha, beta);
              REQUIRE(test::relative_frobenius(d_c.download(), c) <= kGemmRelFrobenius);
            }
}

// An empty inner dimension: C = beta·C exactly as gemm_cpu (no products to round), and with
// beta = 0 the NaN-poisoned C becomes zeros. Bit-identical: one multiply per entry at most.
TEST_CASE("GEMM with k = 0 scales C by beta like gemm_cpu", "[cuda][gemm]") {
  test::Stream stream;
  kernels::BlasHandle blas(stream);
  Rng rng(52);
  const int64_t m = 37, n = 45;
  for (const float beta : {0.0f, 0.5f, 1.0f}) {
    INFO("beta " << beta);
    const auto c0 = test::random_normal(static_cast<size_t>(m * n), rng);
    auto c = c0;
    gemm_cpu(nullptr, false, nullptr, false, c.data(), m, n, 0, 1.5f, beta);
    DeviceArray<float> d_a(1, stream), d_b(1, stream), d_c(c0.size(), stream);
    if (beta != 0.0f) d_c.upload(c0);
    kernels::gemm(blas, d_a.get(), false, d_b.get(), false, d_c.get(), m, n, 0, 1.5f, beta);
    test::require_bit_identical(d_c.download(), c, "C after k = 0");
  }
}
