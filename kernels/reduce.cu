// Reductions: whole-array sum / sum of squares / L2 norm (a flat array).
// Accumulation: every sum is carried in double and returned as a double. The order is fixed for a given shape: each thread sums a strided subset,
// blocks reduce with warp shuffles in a fixed order, and the whole-array sums write one partial per
// block that a single block adds in index order (no atomics), so results are reproducible.
#include "kernels/reduce.h"

#include <algorithm>
#include <string>

#include "kernels/cuda/block_reduce.h"
#include "kernels/cuda/launch.h"

namespace nnr::kernels {
namespace {

constexpr int64_t kMaxPartials = 1024;

template <bool kSquares>
__global__ void partial_sums_kernel(int64_t n, const float* __restrict__ x, double* __restrict__ partials) {
  double s = 0.0;
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const double v = x[i];
    s += kSquares ? v * v : v;
  }
  const double total = block_sum(s);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

template <bool kSqrt>
__global__ void finish_sum_kernel(const double* __restrict__ partials, int64_t count, double* result) {
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) s += partials[i];
  const double total = block_sum(s);
  if (threadIdx.x == 0) *result = kSqrt ? sqrt(total) : total;
}

int64_t partial_count(int64_t n) { return std::max<int64_t>(1, std::min<int64_t>((n + kBlockSize - 1) / kBlockSize, kMaxPartials)); }

template <bool kSquares, bool kSqrt>
void reduce(const char* op, const float* x, int64_t n, double* result, void* workspace, cudaStream_t stream) {
  if (n < 0) throw InvalidArgument(std::string("[") + op + "] negative element count " + std::to_string(n));
  if (!result || !workspace) throw InvalidArgument(std::string("[") + op + "] null result or workspace");
  if (n == 0) {
    NNR_CUDA_CHECK(cudaMemsetAsync(result, 0, sizeof(double), stream));
    return;
  }
  const int64_t blocks = partial_count(n);
  auto* partials = static_cast<double*>(workspace);
  partial_sums_kernel<kSquares><<<static_cast<unsigned>(blocks), kBlockSize, 0, stream>>>(n, x, partials);
  NNR_CUDA_CHECK_LAUNCH();
  finish_sum_kernel<kSqrt><<<1, kBlockSize, 0, stream>>>(partials, blocks, result);
  NNR_CUDA_CHECK_LAUNCH();
}

}  // namespace

size_t reduce_workspace_bytes(int64_t n) { return static_cast<size_t>(partial_count(n)) * sizeof(double); }

void sum(const float* x, int64_t n, double* result, void* workspace, cudaStream_t stream) {
  reduce<false, false>("sum", x, n, result, workspace, stream);
}

void sum_squares(const float* x, int64_t n, double* result, void* workspace, cudaStream_t stream) {
  reduce<true, false>("sum_squares", x, n, result, workspace, stream);
}

void l2_norm(const float* x, int64_t n, double* result, void* workspace, cudaStream_t stream) {
  reduce<true, true>("l2_norm", x, n, result, workspace, stream);
}

}  // namespace nnr::kernels
