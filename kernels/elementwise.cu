// Elementwise kernels: bias add and its gradient, ReLU forward/backward, inverted dropout
// forward/backward. Layout: contiguous float arrays; add_bias and bias_backward see y / dy as
// [outer, channels, inner] row-major. bias_backward carries each channel's sum in double and rounds
// it to float once, in a fixed order (warp shuffles, no atomics), so it is reproducible; it adds into
// db when accumulating (parameter gradients accumulate), else overwrites.
// Accumulation: add_bias adds into y; every other kernel overwrites its output. Each element is
// computed by the same single float operation as the CPU reference (kernels/elementwise.cpp),
// so results are bit-identical to it (no sums, nothing to contract into an FMA).
#include "kernels/elementwise.h"

#include <algorithm>
#include <string>

#include "kernels/cuda/block_reduce.h"
#include "kernels/cuda/launch.h"

namespace nnr::kernels {
namespace {

constexpr int kColumnTile = 32;   // channels per block for [outer, channels] sums
constexpr int kColumnRows = 8;    // row groups per block
// inner == 1: dy is [outer, channels]; block (32, 8) sums 32 adjacent channels, coalesced.
// The channels are rows[k] for k < count (k itself when rows is null, count == channels).
__global__ void bias_backward_columns_kernel(const float* __restrict__ dy, float* __restrict__ db, int64_t outer,
                                             int64_t channels, const int64_t* __restrict__ rows, int64_t count,
                                             bool accumulate) {
  __shared__ double partial[kColumnRows][kColumnTile + 1];
  const int64_t k = static_cast<int64_t>(blockIdx.x) * kColumnTile + threadIdx.x;
  const int64_t c = k < count ? (rows ? rows[k] : k) : 0;
  double s = 0.0;
  if (k < count)
    for (int64_t r = threadIdx.y; r < outer; r += kColumnRows) s += dy[r * channels + c];
  partial[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && k < count) {
    double total = 0.0;
    for (int r = 0; r < kColumnRows; ++r) total += partial[r][threadIdx.x];
    const float value = static_cast<float>(total);
    db[c] = accumulate ? db[c] + value : value;
  }
}

// inner > 1: one block per channel (grid-stride over the channels rows[k], k < count), threads over (o, i).
__global__ void bias_backward_planes_kernel(const float* __restrict__ dy, float* __restrict__ db, int64_t outer,
                                            int64_t channels, int64_t inner, const int64_t* __restrict__ rows,
                                            int64_t count, bool accumulate) {
  const int64_t elements = outer * inner;
  for (int64_t k = blockIdx.x; k < count; k += gridDim.x) {
    const int64_t c = rows ? rows[k] : k;
    double s = 0.0;
    for (int64_t e = threadIdx.x; e < elements; e += blockDim.x) {
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


__global__ void add_bias_kernel(int64_t n, float* __restrict__ y, const float* __restrict__ bias, int64_t channels,
                                int64_t inner) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) y[i] += bias[(i / inner) % channels];
}

// inner == 1 (a [N, C] matrix): the channel is i % C; saves a division per element.
__global__ void add_bias_rows_kernel(int64_t n, float* __restrict__ y, const float* __restrict__ bias,
                                     int64_t channels) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) y[i] += bias[i % channels];
}

__global__ void relu_forward_kernel(int64_t n, const float* x, float* y) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float a = x[i];
    y[i] = a > 0.0f ? a : 0.0f;
  }
}

__global__ void relu_backward_kernel(int64_t n, const float* __restrict__ y, const float* dy, float* dx) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

// splitmix64 finaliser of (seed, i): a well-mixed 64-bit value per element, 53 bits -> [0, 1).
__host__ __device__ inline double uniform_of(uint64_t seed, int64_t i) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (static_cast<uint64_t>(i) + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

__global__ void dropout_forward_kernel(int64_t n, const float* __restrict__ x, double rate, float scale, uint64_t seed,
                                       float* __restrict__ y, float* __restrict__ mask) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float m = uniform_of(seed, i) < rate ? 0.0f : scale;
    mask[i] = m;
    y[i] = x[i] * m;
  }
}

__global__ void dropout_backward_kernel(int64_t n, const float* __restrict__ mask, const float* dy, float* dx) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) dx[i] = dy[i] * mask[i];
}

}  // namespace

void add_bias(float* y, const float* bias, int64_t outer, int64_t channels, int64_t inner, cudaStream_t stream) {
  if (outer < 0 || channels < 0 || inner < 0)
    throw InvalidArgument("[add_bias] negative extent in [" + std::to_string(outer) + ", " + std::to_string(channels) +
                          ", " + std::to_string(inner) + "]");
  const int64_t n = outer * channels * inner;
  if (inner == 1)
    launch_1d(n, stream, add_bias_rows_kernel, y, bias, channels);
  else
    launch_1d(n, stream, add_bias_kernel, y, bias, channels, inner);
}

void relu_forward(const float* x, float* y, int64_t n, cudaStream_t stream) {
  launch_1d(n, stream, relu_forward_kernel, x, y);
}

void relu_backward(const float* y, const float* dy, float* dx, int64_t n, cudaStream_t stream) {
  launch_1d(n, stream, relu_backward_kernel, y, dy, dx);
}

void dropout_forward(const float* x, float rate, uint64_t seed, float* y, float* mask, int64_t n,
                     cudaStream_t stream) {
  if (!(rate >= 0.0f && rate < 1.0f))
    throw InvalidArgument("[dropout] rate must be in [0, 1), got " + std::to_string(rate));
  // The CPU compares a double draw with the float rate promoted to double; so does this.
  launch_1d(n, stream, dropout_forward_kernel, x, static_cast<double>(rate), 1.0f / (1.0f - rate), seed, y, mask);
}

void dropout_backward(const float* mask, const float* dy, float* dx, int64_t n, cudaStream_t stream) {
  launch_1d(n, stream, dropout_backward_kernel, mask, dy, dx);
}

double dropout_uniform(uint64_t seed, int64_t i) { return uniform_of(seed, i); }

namespace {

void launch_channel_sums(const float* dy, float* db, int64_t outer, int64_t channels, int64_t inner,
                         const int64_t* rows, int64_t count, bool accumulate, cudaStream_t stream) {
  if (outer < 0 || channels < 0 || inner < 0 || count < 0)
    throw InvalidArgument("[bias_backward] negative extent in [" + std::to_string(outer) + ", " +
                          std::to_string(channels) + ", " + std::to_string(inner) + "]");
  if (count == 0) return;
  if (inner == 1) {
    const dim3 block(kColumnTile, kColumnRows);
    const unsigned grid = static_cast<unsigned>((count + kColumnTile - 1) / kColumnTile);
    bias_backward_columns_kernel<<<grid, block, 0, stream>>>(dy, db, outer, channels, rows, count, accumulate);
  } else {
    const unsigned grid = static_cast<unsigned>(std::min<int64_t>(count, kMaxGridBlocks));
    bias_backward_planes_kernel<<<grid, kBlockSize, 0, stream>>>(dy, db, outer, channels, inner, rows, count,
                                                                 accumulate);
  }
  NNR_CUDA_CHECK_LAUNCH();
}

}  // namespace

void bias_backward(const float* dy, float* db, int64_t outer, int64_t channels, int64_t inner, bool accumulate,
                   cudaStream_t stream) {
  launch_channel_sums(dy, db, outer, channels, inner, nullptr, channels, accumulate, stream);
}

void bias_backward_rows(const float* dy, float* db, int64_t outer, int64_t channels, int64_t inner,
                        const int64_t* rows, int64_t count, cudaStream_t stream) {
  launch_channel_sums(dy, db, outer, channels, inner, rows, count, /*accumulate=*/true, stream);
}

}  // namespace nnr::kernels
