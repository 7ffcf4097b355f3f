// CUDA Graph support: the update kernels reading their per-step scalars from the device, a
// captured graph that reads page-locked inputs at replay time, and the allocator's private pools.
#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include "engine/core/rng.h"
#include "engine/optim/update_mask.h"
#include "kernels/cuda/device_memory.h"
#include "kernels/elementwise.h"
#include "kernels/cuda/graph.h"
#include "kernels/masked_update.h"
#include "tests/kernels/gpu_test_util.h"

using namespace nnr;
using nnr::test::DeviceArray;
using nnr::test::DeviceMask;

// Bit-identical, not "close": the kernel reads from memory exactly the floats it would otherwise
// compute on the host (kernels::step_scalars is that computation), so any difference is a bug.
TEST_CASE("update kernels given their step scalars on the device update bit for bit as with arguments",
          "[cuda][masked_update][graph]") {
  test::Stream stream;
  Rng rng(77);
  for (const int64_t rows : test::awkward_rows()) {
    const int64_t row_length = 13, n = rows * row_length;
    std::vector<int64_t> some_rows;
    for (int64_t r = 0; r < rows; ++r)
      if (r == 0 || rng.uniform() < 0.3) some_rows.push_back(r);
    std::vector<uint8_t> flags(static_cast<size_t>(n));
    for (auto& f : flags) f = rng.uniform() < 0.4;
    for (const UpdateMask& mask : {UpdateMask::all(), UpdateMask::of_rows(some_rows), UpdateMask::of_elements(flags)})
      for (const bool adam : {false, true}) {
        INFO("rows " << rows << ", mask kind " << static_cast<int>(mask.kind) << (adam ? ", adam" : ", sgd"));
        const auto theta0 = test::random_normal(static_cast<size_t>(n), rng);
        const auto grad = test::random_normal(static_cast<size_t>(n), rng, 0.1f);
        auto second0 = test::random_normal(static_cast<size_t>(n), rng, 0.01f);
        for (auto& v : second0) v = v * v;  // Adam's second moment is non-negative
        const auto first0 = test::random_normal(static_cast<size_t>(n), rng, 0.01f);
        const auto anchor = test::random_normal(static_cast<size_t>(n), rng);
        const DeviceMask device_mask(mask, row_length, stream);
        const kernels::MaskArgs& margs = device_mask.args;

        std::vector<std::vector<float>> results;
        for (const bool on_device : {false, true}) {
          DeviceArray<float> theta(theta0, stream), first(first0, stream), second(second0, stream),
              d_grad(grad, stream), d_anchor(anchor, stream);
          kernels::PenaltyArgs penalty;
          penalty.anchor = d_anchor.get();
          penalty.lambda = 0.3f;
          const int64_t step = 4;
          float host_scalars[kernels::kStepScalarCount];
          kernels::SgdArgs sgd{0.05f, 0.9f, 1e-4f, false};
          kernels::AdamArgs adam_args{0.01f, 0.9f, 0.999f, 1e-8f, 1e-4f};
          if (adam)
            kernels::step_scalars(adam_args, step, host_scalars);
          else
            kernels::step_scalars(sgd, host_scalars);
          DeviceArray<float> scalars(std::vector<float>(host_scalars, host_scalars + kernels::kStepScalarCount), stream);
          if (on_device) {
            // The by-value fields are made wrong: only the device scalars may be used.
            sgd.lr = adam_args.lr = 123.0f;
            sgd.scalars = adam_args.scalars = scalars.get();
          }
          if (adam)
            kernels::adam_update(theta.get(), d_grad.get(), first.get(), second.get(), n, on_device ? 999 : step,
                                 adam_args, margs, penalty, stream);
          else
            kernels::sgd_update(theta.get(), d_grad.get(), first.get(), n, sgd, margs, penalty, stream);
          results.push_back(theta.download());
          results.push_back(first.download());
          results.push_back(second.download());
        }
        test::require_bit_identical(results[3], results[0], "theta");
        test::require_bit_identical(results[4], results[1], "first state");
        test::require_bit_identical(results[5], results[2], "second state");
      }
  }
}

TEST_CASE("a captured graph reads its page-locked input when replayed, not when captured", "[cuda][graph]") {
  test::Stream stream;
  const int64_t n = 1000;  // not a multiple of the block size
  kernels::PinnedBuffer in(n * sizeof(float)), out(n * sizeof(float));
  DeviceArray<float> x(static_cast<size_t>(n), stream), y(static_cast<size_t>(n), stream);
  stream.sync();

  kernels::CapturedGraph::begin_capture(stream);
  REQUIRE(kernels::CapturedGraph::is_capturing(stream));
  NNR_CUDA_CHECK(cudaMemcpyAsync(x.get(), in.data(), n * sizeof(float), cudaMemcpyHostToDevice, stream));
  kernels::relu_forward(x.get(), y.get(), n, stream);
  NNR_CUDA_CHECK(cudaMemcpyAsync(out.data(), y.get(), n * sizeof(float), cudaMemcpyDeviceToHost, stream));
  const kernels::CapturedGraph graph = kernels::CapturedGraph::end_capture(stream);
  REQUIRE_FALSE(kernels::CapturedGraph::is_capturing(stream));

  Rng rng(5);
  for (int replay = 0; replay < 3; ++replay) {
    const auto values = test::random_normal(static_cast<size_t>(n), rng);
    std::memcpy(in.data(), values.data(), n * sizeof(float));
    graph.launch(stream);
    stream.sync();
    std::vector<float> got(static_cast<size_t>(n)), want(static_cast<size_t>(n));
    std::memcpy(got.data(), out.data(), n * sizeof(float));
    for (size_t i = 0; i < want.size(); ++i) want[i] = values[i] > 0.0f ? values[i] : 0.0f;
    INFO("replay " << replay);
    test::require_bit_identical(got, want, "relu of the replay's input");
  }
}

TEST_CASE("a call that waits for the stream fails the capture with a CudaError, and the stream recovers",
          "[cuda][graph]") {
  test::Stream stream;
  kernels::CapturedGraph::begin_capture(stream);
  REQUIRE_THROWS_AS([&] { NNR_CUDA_CHECK(cudaStreamSynchronize(stream)); }(), CudaError);
  kernels::CapturedGraph::abandon_capture(stream);
  REQUIRE_FALSE(kernels::CapturedGraph::is_capturing(stream));
  DeviceArray<float> x(std::vector<float>{-1.0f, 2.0f}, stream), y(2, stream);
  kernels::relu_forward(x.get(), y.get(), 2, stream);
  REQUIRE(y.download() == std::vector<float>{0.0f, 2.0f});

  // Ending the invalidated capture reports it, and leaves no error for the next launch check.
  kernels::CapturedGraph::begin_capture(stream);
  REQUIRE_THROWS_AS([&] { NNR_CUDA_CHECK(cudaStreamSynchronize(stream)); }(), CudaError);
  REQUIRE_THROWS_AS(kernels::CapturedGraph::end_capture(stream), CudaError);
  REQUIRE_FALSE(kernels::CapturedGraph::is_capturing(stream));
  kernels::relu_forward(x.get(), y.get(), 2, stream);  // checks cudaGetLastError after the launch
  REQUIRE(y.download() == std::vector<float>{0.0f, 2.0f});
}

TEST_CASE("blocks of a private pool stay reserved for it until the pool is released", "[cuda][memory][graph]") {
  kernels::CachingAllocator allocator;
  const size_t bytes = 3000;
  const size_t size = kernels::CachingAllocator::rounded_size(bytes);
  void* shared = allocator.allocate(bytes);
  allocator.deallocate(shared, bytes);  // now in the shared cache

  const auto pool = allocator.begin_capture_pool();
  void* a = allocator.allocate(bytes);  // from the shared cache: joins the pool
  REQUIRE(a == shared);
  void* b = allocator.allocate(bytes);  // fresh: joins the pool
  allocator.deallocate(b, bytes);       // back to the pool, not the shared cache
  void* c = allocator.allocate(bytes);  // the pool serves its own free block first
  REQUIRE(c == b);
  allocator.end_capture_pool();

  allocator.deallocate(a, bytes);  // a pool block freed after the capture stays in the pool
  allocator.deallocate(c, bytes);
  REQUIRE(allocator.stats().bytes_pooled == static_cast<int64_t>(2 * size));
  // The pool's blocks were cut from a 2 MiB segment whose rest stays in the shared cache.
  void* outside = allocator.allocate(bytes);  // must not get a or c (it gets part of the shared rest)
  REQUIRE(outside != a);
  REQUIRE(outside != c);
  const int64_t cached = allocator.stats().bytes_cached;

  allocator.release_pool(pool);
  REQUIRE(allocator.stats().bytes_pooled == 0);
  REQUIRE(allocator.stats().bytes_cached == cached + static_cast<int64_t>(2 * size));
  void* again = allocator.allocate(bytes);
  REQUIRE((again == a || again == c));
  allocator.deallocate(again, bytes);
  allocator.deallocate(outside, bytes);
}

TEST_CASE("a pool allocation that needs cudaMalloc during a capture does not break the capture",
          "[cuda][memory][graph]") {
  test::Stream stream;
  kernels::CachingAllocator allocator;
  const int64_t n = 257;
  DeviceArray<float> x(std::vector<float>(static_cast<size_t>(n), -2.0f), stream);
  stream.sync();
  const auto pool = allocator.begin_capture_pool();
  kernels::CapturedGraph::begin_capture(stream);
  auto* y = static_cast<float*>(allocator.allocate(n * sizeof(float)));  // a cache miss: cudaMalloc
  kernels::relu_forward(x.get(), y, n, stream);
  allocator.end_capture_pool();
  const kernels::CapturedGraph graph = kernels::CapturedGraph::end_capture(stream);
  REQUIRE(allocator.stats().malloc_calls == 1);
  graph.launch(stream);
  std::vector<float> got(static_cast<size_t>(n), 1.0f);
  NNR_CUDA_CHECK(cudaMemcpyAsync(got.data(), y, n * sizeof(float), cudaMemcpyDeviceToHost, stream));
  stream.sync();
  test::require_bit_identical(got, std::vector<float>(static_cast<size_t>(n), 0.0f), "relu of -2");
  allocator.deallocate(y, n * sizeof(float));
  allocator.release_pool(pool);
}
