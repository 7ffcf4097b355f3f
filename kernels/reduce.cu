// Reductions: per-channel bias gradients and whole-array sum / sum of squares / L2 norm.
// Layout: bias_backward views dy as [outer, channels, inner] row-major; sums see a flat array.
// Accumulation: every sum is carried in double and rounded to float once (bias gradients) or
// returned as a double. The order is fixed for a given shape: each thread sums a strided subset,
// blocks reduce with warp shuffles in a fixed order, and the whole-array sums write one partial per
// block that a single block adds in index order (no atomics), so results are reproducible.
// bias_backward adds into db when accumulating (parameter gradients accumulate), else overwrites.
#include "kernels/reduce.h"

#include <algorithm>
#include <string>

#include "kernels/block_reduce.h"
#include "kernels/launch.h"

namespace nnr::kernels {
namespace {

constexpr int kColumnTile = 32;   // channels per block for [outer, channels] sums
constexpr int kColumnRows = 8;    // row groups per block
constexpr int64_t kMaxPartials = 1024;

// inner == 1: dy is [outer, channels]; block (32, 8) sums 32 adjacent channels, coalesced.
__global__ void bias_backward_columns_kernel(const float* __restrict__ dy, float* __restrict__ db, int64_t outer,
                                             int64_t channels, bool accumulate) {
  __shared__ double partial[kColumnRows][kColumnTile + 1];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColumnTile + threadIdx.x;
  double s = 0.0;
  if (c < channels)
    for (int64_t r = threadIdx.y; r < outer; r += kColumnRows) s += dy[r * channels + c];
  partial[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < channels) {
    double total = 0.0;
    for (int r = 0; r < kColumnRows; ++r) total += partial[r][threadIdx.x];
    const float value = static_cast<float>(total);
    db[c] = accumulate ? db[c] + value : value;
  }
}

// inner > 1: one block per channel (grid-stride over channels), threads over (o, i).
__global__ void bias_backward_planes_kernel(const float* __restrict__ dy, float* __restrict__ db, int64_t outer,
                                            int64_t channels, int64_t inner, bool accumulate) {
  const int64_t count = outer * inner;
  for (int64_t c = blockIdx.x; c < channels; c += gridDim.x) {
    double s = 0.0;
    for (int64_t e = threadIdx.x; e < count; e += blockDim.x) {
      const int64_t o = e / inner, i = e - o * inner;
      s += dy[(o * channels + c) * inner + i];
    }
    const double total = block_sum(s);
    if (threadIdx.x == 0) {
      const float value = static_cast<float>(total);
      db[c] = accumulate ? db[c] + value : value;
    }
  }
}

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

void bias_backward(const float* dy, float* db, int64_t outer, int64_t channels, int64_t inner, bool accumulate,
                   cudaStream_t stream) {
  if (outer < 0 || channels < 0 || inner < 0)
    throw InvalidArgument("[bias_backward] negative extent in [" + std::to_string(outer) + ", " +
                          std::to_string(channels) + ", " + std::to_string(inner) + "]");
  if (channels == 0) return;
  if (inner == 1) {
    const dim3 block(kColumnTile, kColumnRows);
    const unsigned grid = static_cast<unsigned>((channels + kColumnTile - 1) / kColumnTile);
    bias_backward_columns_kernel<<<grid, block, 0, stream>>>(dy, db, outer, channels, accumulate);
  } else {
    const unsigned grid = static_cast<unsigned>(std::min<int64_t>(channels, kMaxGridBlocks));
    bias_backward_planes_kernel<<<grid, kBlockSize, 0, stream>>>(dy, db, outer, channels, inner, accumulate);
  }
  NNR_CUDA_CHECK_LAUNCH();
}

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
