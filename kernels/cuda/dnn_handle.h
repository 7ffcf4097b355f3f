#pragma once
// 2-D convolution through cuDNN (built only when cuDNN is found: NNR_WITH_CUDNN). Cross-
// correlation on NCHW float tensors, weights [O, C, KH, KW], square stride, zero padding:
// the CPU reference is kernels/conv2d.h (which holds ConvShape), whose three entry points these
// mirror. Defined in kernels/conv2d.cu.
// One DnnHandle per device context: it owns the cuDNN handle bound to the engine's stream, a
// cache of descriptors and chosen algorithms per shape (chosen once, by cuDNN's heuristics,
// with no trial runs, so nothing is overwritten or allocated while choosing), and one workspace
// that only grows, so a steady-state loop over the same shapes allocates nothing. Given a
// CachingAllocator, the workspace is borrowed from it (so its out-of-memory retry, its bound on
// cached bytes and its counters see it, and growing it during a stream capture neither cudaFrees
// nor breaks the capture); without one it is cudaMalloc'd directly.
// TF32 is off unless asked for (CUDNN_FMA_MATH), so results match fp32 references.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "kernels/conv2d.h"

namespace nnr::kernels {

class CachingAllocator;


class DnnHandle {
 public:
  explicit DnnHandle(cudaStream_t stream, bool allow_tf32 = false);
  // The workspace comes from `allocator`, which must outlive the handle.
  DnnHandle(cudaStream_t stream, CachingAllocator& allocator, bool allow_tf32 = false);
  ~DnnHandle();
  DnnHandle(const DnnHandle&) = delete;
  DnnHandle& operator=(const DnnHandle&) = delete;

  void set_stream(cudaStream_t stream);

  // y = conv(x, w); overwrites y [n, o, out_h, out_w]. (Bias: kernels::add_bias afterwards.)
  void conv2d_forward(const float* x, const float* w, const ConvShape& shape, float* y);
  // dx = conv_transpose(dy, w); overwrites dx [n, c, h, w].
  void conv2d_backward_data(const float* dy, const float* w, const ConvShape& shape, float* dx);
  // dw (+)= Σ_n dy[n] ⋆ x[n] for every filter; accumulate false overwrites dw.
  void conv2d_backward_filter(const float* x, const float* dy, const ConvShape& shape, float* dw, bool accumulate);

  // For tests and diagnostics: shapes planned, workspace size and how often it was (re)allocated.
  int64_t plans_cached() const;
  size_t workspace_bytes() const;
  int64_t workspace_allocations() const;

 private:
  struct Impl;
  DnnHandle(cudaStream_t stream, CachingAllocator* allocator, bool allow_tf32);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nnr::kernels
