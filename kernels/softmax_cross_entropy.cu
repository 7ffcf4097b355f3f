// Softmax + cross-entropy forward and backward.
// Layout: logits / probs / dlogits are [n, k] row-major floats, labels n int32.
// Forward: one warp per row, three passes over the row (max; Σ exp(x − max); write probs),
// exactly the CPU reference's arithmetic: e_j = expf(x_j − max) in float, the sum in double,
// p_j = e_j · (float)(1 / sum), logsumexp = log(sum) + max in double. The mean loss is summed
// per row in double and combined with a double atomicAdd (order varies only in the last bits
// of a double). expf differs from the host's by ≤ 2 ulp, so probs agree to a few ulps.
// Backward: elementwise, p·scale then − scale at the label, rounded as the CPU rounds it
// (no FMA), so it is bit-identical to the reference given the same probs.
#include "kernels/softmax_cross_entropy.h"

#include <algorithm>
#include <string>

#include "kernels/cuda/launch.h"

namespace nnr::kernels {
namespace {

constexpr int kWarpsPerBlock = kBlockSize / 32;

inline __device__ float warp_max(float value) {
  for (int offset = 16; offset > 0; offset >>= 1) value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

inline __device__ double warp_sum_all(double value) {
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

template <bool kLoss>
__global__ void softmax_rows_kernel(int64_t n, int64_t k, const float* __restrict__ logits,
                                    const int32_t* __restrict__ labels, float* __restrict__ probs, double* loss) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5); row < n; row += warps) {
    const float* x = logits + row * k;
    float* p = probs + row * k;
    float mx = -INFINITY;
    for (int64_t j = lane; j < k; j += 32) mx = fmaxf(mx, x[j]);
    mx = warp_max(mx);
    double sum = 0.0;
    for (int64_t j = lane; j < k; j += 32) sum += static_cast<double>(expf(x[j] - mx));
    sum = warp_sum_all(sum);
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = lane; j < k; j += 32) p[j] = __fmul_rn(expf(x[j] - mx), inv);
    if (kLoss && lane == 0) {
      const int32_t label = labels[row];
      const double row_loss = (label >= 0 && label < k) ? log(sum) + mx - x[label] : __longlong_as_double(0x7ff8000000000000ll);
      atomicAdd(loss, row_loss / static_cast<double>(n));
    }
  }
}

__global__ void softmax_cross_entropy_backward_kernel(int64_t total, const float* __restrict__ probs,
                                             const int32_t* __restrict__ labels, int64_t k, float scale,
                                             float* __restrict__ dlogits) {
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    float d = __fmul_rn(probs[i], scale);
    if (labels[i / k] == static_cast<int32_t>(i % k)) d = __fsub_rn(d, scale);
    dlogits[i] = d;
  }
}

void check_extent(const char* op, int64_t n, int64_t k) {
  if (n < 0 || k < 1)
    throw InvalidArgument(std::string("[") + op + "] expected n >= 0 rows of k >= 1 logits, got n = " +
                          std::to_string(n) + ", k = " + std::to_string(k));
}

unsigned row_grid(int64_t n) {
  return static_cast<unsigned>(std::min<int64_t>((n + kWarpsPerBlock - 1) / kWarpsPerBlock, kMaxGridBlocks));
}

}  // namespace

void softmax_cross_entropy_forward(const float* logits, const int32_t* labels, int64_t n, int64_t k, float* probs, double* loss,
                          cudaStream_t stream) {
  check_extent("softmax_cross_entropy_forward", n, k);
  if (!loss) throw InvalidArgument("[softmax_cross_entropy_forward] null loss pointer");
  NNR_CUDA_CHECK(cudaMemsetAsync(loss, 0, sizeof(double), stream));
  if (n == 0) return;
  softmax_rows_kernel<true><<<row_grid(n), kBlockSize, 0, stream>>>(n, k, logits, labels, probs, loss);
  NNR_CUDA_CHECK_LAUNCH();
}

void softmax_cross_entropy_backward(const float* probs, const int32_t* labels, int64_t n, int64_t k, float scale,
                           float* dlogits, cudaStream_t stream) {
  check_extent("softmax_cross_entropy_backward", n, k);
  launch_1d(n * k, stream, softmax_cross_entropy_backward_kernel, probs, labels, k, scale, dlogits);
}

void softmax_forward(const float* logits, int64_t n, int64_t k, float* probs, cudaStream_t stream) {
  check_extent("softmax", n, k);
  if (n == 0) return;
  softmax_rows_kernel<false><<<row_grid(n), kBlockSize, 0, stream>>>(n, k, logits, nullptr, probs, nullptr);
  NNR_CUDA_CHECK_LAUNCH();
}

}  // namespace nnr::kernels
