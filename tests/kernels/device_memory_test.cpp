// Device buffers, the caching allocator's counters, and the checked-call macro.
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>

#include "kernels/cuda_check.h"
#include "kernels/device_memory.h"
#include "kernels/elementwise.h"
#include "kernels/masked_update.h"
#include "kernels/reduce.h"
#include "kernels/softmax_xent.h"
#include "tests/kernels/gpu_test_util.h"

using namespace nnr;
using nnr::kernels::CachingAllocator;
using nnr::kernels::DeviceBuffer;

TEST_CASE("device buffer round-trips host data and moves without copying", "[cuda][memory]") {
  test::Stream stream;
  const std::vector<float> host{1.0f, -2.5f, 3.25f, 0.0f, 7.0f};
  DeviceBuffer a(host.size() * sizeof(float));
  a.copy_from_host(host.data(), host.size() * sizeof(float), stream);
  void* block = a.data();
  DeviceBuffer b(std::move(a));
  REQUIRE(a.data() == nullptr);
  REQUIRE(a.bytes() == 0);
  REQUIRE(b.data() == block);
  std::vector<float> back(host.size());
  b.copy_to_host(back.data(), back.size() * sizeof(float), stream);
  REQUIRE(back == host);
  REQUIRE_THROWS_AS(b.copy_to_host(back.data(), 1024, stream), Error);
}

TEST_CASE("caching allocator serves repeated same-size allocations with no new cudaMalloc", "[cuda][memory]") {
  CachingAllocator allocator;
  const std::vector<size_t> sizes{4000, 37 * sizeof(float), size_t{1} << 20, 1};
  for (int iteration = 0; iteration < 100; ++iteration) {
    std::vector<DeviceBuffer> live;
    for (const size_t bytes : sizes) live.emplace_back(bytes, allocator);
    if (iteration == 0) REQUIRE(allocator.stats().malloc_calls == static_cast<int64_t>(sizes.size()));
  }
  const auto stats = allocator.stats();
  REQUIRE(stats.malloc_calls == static_cast<int64_t>(sizes.size()));  // only the first iteration
  REQUIRE(stats.free_calls == 0);
  REQUIRE(stats.cache_hits == 99 * static_cast<int64_t>(sizes.size()));
  REQUIRE(stats.bytes_in_use == 0);
  allocator.release_cached();
  REQUIRE(allocator.stats().free_calls == static_cast<int64_t>(sizes.size()));
  REQUIRE(allocator.stats().bytes_cached == 0);
}

// A size whose rounding to 256 bytes wraps (here to 0, as a negative count cast to size_t would)
// must fail like any impossible request, not come back as nullptr or a tiny block.
TEST_CASE("caching allocator rejects a request whose rounded size would wrap", "[cuda][memory]") {
  CachingAllocator allocator;
  REQUIRE_THROWS_AS(allocator.allocate(static_cast<size_t>(-4)), CudaError);
  REQUIRE_THROWS_AS(allocator.allocate(SIZE_MAX), CudaError);
  const auto stats = allocator.stats();
  REQUIRE(stats.bytes_in_use == 0);
  REQUIRE(stats.bytes_cached == 0);
  DeviceBuffer ok(100, allocator);  // the allocator still works afterwards
  REQUIRE(ok.data() != nullptr);
}

// A training-step-shaped loop: temporaries for activations, probabilities, gradients, the loss
// and the penalty value are allocated and freed every step, kernels run on them, and after the
// first step the allocator never calls cudaMalloc or cudaFree again.
TEST_CASE("steady-state training loop performs no cudaMalloc or cudaFree after its first step", "[cuda][memory]") {
  test::Stream stream;
  CachingAllocator allocator;
  Rng rng(71);
  const int64_t batch = 257, classes = 10, params = classes * 37;
  test::DeviceArray<float> theta(test::random_normal(params, rng), stream), anchor(test::random_normal(params, rng), stream),
      velocity(std::vector<float>(params, 0.0f), stream), bias(test::random_normal(classes, rng), stream);
  std::vector<int32_t> host_labels(batch);
  for (auto& l : host_labels) l = static_cast<int32_t>(rng.below(classes));
  test::DeviceArray<int32_t> labels(host_labels, stream);
  const auto host_logits = test::random_normal(static_cast<size_t>(batch * classes), rng);

  int64_t mallocs_after_first = -1;
  for (int step = 0; step < 20; ++step) {
    DeviceBuffer logits(batch * classes * sizeof(float), allocator);
    DeviceBuffer probs(batch * classes * sizeof(float), allocator);
    DeviceBuffer dlogits(batch * classes * sizeof(float), allocator);
    DeviceBuffer grad(params * sizeof(float), allocator);
    DeviceBuffer scalars(2 * sizeof(double), allocator);
    DeviceBuffer workspace(kernels::reduce_workspace_bytes(params), allocator);
    NNR_CUDA_CHECK(cudaMemcpyAsync(logits.data(), host_logits.data(), logits.bytes(), cudaMemcpyHostToDevice, stream));
    kernels::add_bias(logits.as<float>(), bias.get(), batch, classes, 1, stream);
    kernels::relu_forward(logits.as<float>(), logits.as<float>(), batch * classes, stream);
    kernels::softmax_xent_forward(logits.as<float>(), labels.get(), batch, classes, probs.as<float>(),
                                  scalars.as<double>(), stream);
    kernels::softmax_xent_backward(probs.as<float>(), labels.get(), batch, classes, 1.0f / batch, dlogits.as<float>(),
                                   stream);
    NNR_CUDA_CHECK(cudaMemcpyAsync(grad.data(), dlogits.data(), grad.bytes(), cudaMemcpyDeviceToDevice, stream));
    kernels::PenaltyArgs penalty;
    penalty.anchor = anchor.get();
    penalty.lambda = 0.1f;
    penalty.want_value = true;
    penalty.value = scalars.as<double>() + 1;
    kernels::sgd_update(theta.get(), grad.as<float>(), velocity.get(), params, {0.01f, 0.9f, 0.0f, false}, {}, penalty,
                        stream);
    kernels::l2_norm(theta.get(), params, scalars.as<double>(), workspace.data(), stream);
    stream.sync();
    if (step == 0) mallocs_after_first = allocator.stats().malloc_calls;
  }
  const auto stats = allocator.stats();
  REQUIRE(mallocs_after_first > 0);
  REQUIRE(stats.malloc_calls == mallocs_after_first);
  REQUIRE(stats.free_calls == 0);
  REQUIRE(stats.cache_hits == 19 * mallocs_after_first);
}

TEST_CASE("a failing CUDA call throws CudaError naming the call, file and line", "[cuda][memory]") {
  int count = 0;
  NNR_CUDA_CHECK(cudaGetDeviceCount(&count));
  try {
    NNR_CUDA_CHECK(cudaSetDevice(count + 5));
    FAIL("no exception");
  } catch (const CudaError& e) {
    const std::string what = e.what();
    INFO(what);
    REQUIRE(what.find("cudaSetDevice(count + 5)") != std::string::npos);
    REQUIRE(what.find("device_memory_test.cpp:") != std::string::npos);
    REQUIRE(what.find("[cuda]") == 0);
  }
  // The runtime remembers the failure as its last error; reading it clears it. cudaErrorInvalidDevice
  // is not sticky, so the context still works.
  const cudaError_t last = cudaGetLastError();
  REQUIRE((last == cudaErrorInvalidDevice || last == cudaSuccess));
  NNR_CUDA_CHECK(cudaFree(nullptr));
}
