// What a CUDA request does where CUDA cannot run (a CPU-only build, or no usable device): a clear
// nnr::Error naming the operation, never a crash or a link failure. On a machine with a device
// the same cases check that the Context comes up instead; the GPU behaviour itself is tested in
// tests/engine/cuda (nnr_engine_cuda_tests).
#include <catch2/catch.hpp>

#include "engine/core/context.h"
#include "engine/core/error.h"
#include "engine/core/tensor.h"
#include "engine/ops/elementwise.h"

using nnr::Context;
using nnr::Device;
using nnr::Tensor;

TEST_CASE("a cuda tensor without a Context is an error naming the fix", "[context]") {
  REQUIRE_THROWS_WITH(Tensor({2, 3}, Device::CUDA), Catch::Contains("[tensor] a cuda tensor needs a Context"));
  REQUIRE_THROWS_AS(Tensor::empty({2, 3}, Device::CUDA), nnr::Error);
}

TEST_CASE("Context says why CUDA is unavailable, and constructing one then throws that reason", "[context]") {
  const std::string why = Context::why_cuda_unavailable();
  if (why.empty()) {
    Context ctx;  // a usable device: it must come up
    REQUIRE(ctx.device_index() == 0);
  } else {
    INFO("reason: " << why);
    REQUIRE_THROWS_WITH(Context(), Catch::StartsWith("[context] ") && Catch::Contains(why));
#ifndef NNR_WITH_CUDA
    REQUIRE_THAT(why, Catch::Contains("built without CUDA"));
#endif
  }
}

TEST_CASE("cpu placement and copies stay on the host", "[context]") {
  Tensor t = Tensor::from_vector({2, 2}, {1, -2, 3, -4});
  REQUIRE(t.placement().device == Device::CPU);
  REQUIRE(t.context() == nullptr);
  Tensor c = t.to_cpu();
  REQUIRE(c.to_vector() == t.to_vector());
  Tensor y({2, 2});
  y.copy_from(t);
  REQUIRE(y.to_vector() == t.to_vector());
  Tensor wrong({3});
  REQUIRE_THROWS_WITH(wrong.copy_from(t), Catch::Contains("[tensor] copy_from"));
}
