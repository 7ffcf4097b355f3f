// Convolution forward, backward-data and backward-filter through cuDNN's convolution API.
// Layout: NCHW float input/output, [O, C, KH, KW] filters, cross-correlation (as PyTorch).
// Per distinct ConvShape a Plan holds the four descriptors and, per direction, the algorithm
// chosen once from cuDNN's heuristics (the first supported candidate within kMaxWorkspaceBytes;
// without TF32, skipping tensor-op candidates and running with CUDNN_FMA_MATH). One workspace
// buffer, grown to the largest need, is reused (borrowed from the handle's CachingAllocator when
// it has one).
// Accumulation: cuDNN's own; backward-filter uses beta = 1 to add into dw when accumulating.
#include "kernels/cuda/dnn_handle.h"

#include <cudnn.h>

#include <array>
#include <climits>
#include <cstdio>
#include <map>
#include <string>
#include <tuple>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_memory.h"

namespace nnr::kernels {
namespace {

constexpr size_t kMaxWorkspaceBytes = size_t{1} << 30;

using ShapeKey = std::array<int64_t, 9>;

ShapeKey key_of(const ConvShape& s) { return {s.n, s.c, s.h, s.w, s.o, s.kh, s.kw, s.stride, s.padding}; }

int to_int(int64_t v, const char* what) {
  if (v < 0 || v > INT_MAX) throw InvalidArgument(std::string("[conv2d] ") + what + " out of range: " + std::to_string(v));
  return static_cast<int>(v);
}

void check_shape(const ConvShape& s) {
  if (s.n < 1 || s.c < 1 || s.o < 1 || s.kh < 1 || s.kw < 1 || s.stride < 1 || s.padding < 0 ||
      s.h + 2 * s.padding < s.kh || s.w + 2 * s.padding < s.kw)
    throw InvalidArgument("[conv2d] bad shape: input [" + std::to_string(s.n) + ", " + std::to_string(s.c) + ", " +
                          std::to_string(s.h) + ", " + std::to_string(s.w) + "], weight [" + std::to_string(s.o) +
                          ", " + std::to_string(s.c) + ", " + std::to_string(s.kh) + ", " + std::to_string(s.kw) +
                          "], stride " + std::to_string(s.stride) + ", padding " + std::to_string(s.padding));
}

void log_status(const char* what, cudnnStatus_t status) {
  if (status != CUDNN_STATUS_SUCCESS) std::fprintf(stderr, "[DnnHandle] %s failed: %s\n", what, cudnnGetErrorString(status));
}

struct Plan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  bool have_fwd = false, have_bwd_data = false, have_bwd_filter = false;
  cudnnConvolutionFwdAlgoPerf_t fwd{};
  cudnnConvolutionBwdDataAlgoPerf_t bwd_data{};
  cudnnConvolutionBwdFilterAlgoPerf_t bwd_filter{};

  Plan(const ConvShape& s, cudnnMathType_t math) {
    try {
      NNR_CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
      NNR_CUDNN_CHECK(cudnnCreateTensorDescriptor(&y));
      NNR_CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
      NNR_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
      NNR_CUDNN_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, to_int(s.n, "batch"),
                                                 to_int(s.c, "channels"), to_int(s.h, "height"), to_int(s.w, "width")));
      NNR_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, to_int(s.o, "filters"),
                                                 to_int(s.c, "channels"), to_int(s.kh, "kernel height"),
                                                 to_int(s.kw, "kernel width")));
      NNR_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv, to_int(s.padding, "padding"), to_int(s.padding, "padding"),
                                                      to_int(s.stride, "stride"), to_int(s.stride, "stride"), 1, 1,
                                                      CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
      NNR_CUDNN_CHECK(cudnnSetConvolutionMathType(conv, math));
      int dims[4];
      NNR_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv, x, w, &dims[0], &dims[1], &dims[2], &dims[3]));
      if (dims[2] != s.out_h() || dims[3] != s.out_w())
        throw Error("[conv2d] cuDNN output size " + std::to_string(dims[2]) + "x" + std::to_string(dims[3]) +
                    " differs from the expected " + std::to_string(s.out_h()) + "x" + std::to_string(s.out_w()));
      NNR_CUDNN_CHECK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, dims[0], dims[1], dims[2],
                                                 dims[3]));
    } catch (...) {
      destroy();
      throw;
    }
  }
  ~Plan() { destroy(); }
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;

  void destroy() noexcept {
    if (conv) log_status("cudnnDestroyConvolutionDescriptor", cudnnDestroyConvolutionDescriptor(conv));
    if (w) log_status("cudnnDestroyFilterDescriptor", cudnnDestroyFilterDescriptor(w));
    if (y) log_status("cudnnDestroyTensorDescriptor", cudnnDestroyTensorDescriptor(y));
    if (x) log_status("cudnnDestroyTensorDescriptor", cudnnDestroyTensorDescriptor(x));
    conv = nullptr;
    w = nullptr;
    x = y = nullptr;
  }
};

// The first heuristic candidate that cuDNN supports for this shape within a bounded workspace.
// Without TF32, candidates flagged for tensor-op math are skipped; the chosen algorithm then runs
// with the descriptor in CUDNN_FMA_MATH (plain fp32 FMA), whatever math the heuristic reported.
template <typename Perf>
Perf pick(const Perf* perfs, int count, bool allow_tf32, const char* direction) {
  for (int i = 0; i < count; ++i) {
    const bool tensor_op = perfs[i].mathType == CUDNN_TENSOR_OP_MATH ||
                           perfs[i].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    if (perfs[i].status == CUDNN_STATUS_SUCCESS && (allow_tf32 || !tensor_op) && perfs[i].memory <= kMaxWorkspaceBytes)
      return perfs[i];
  }
  throw Error(std::string("[conv2d] cuDNN offers no ") + direction + " algorithm for this shape" +
              (allow_tf32 ? "" : " without tensor-op math") + " within " + std::to_string(kMaxWorkspaceBytes >> 20) +
              " MiB of workspace");
}

}  // namespace

struct DnnHandle::Impl {
  cudnnHandle_t handle = nullptr;
  bool allow_tf32 = false;
  cudnnMathType_t math = CUDNN_FMA_MATH;  // the descriptors' math mode while choosing
  std::map<ShapeKey, std::unique_ptr<Plan>> plans;
  CachingAllocator* allocator = nullptr;  // the workspace's source; nullptr: cudaMalloc
  DeviceBuffer workspace;
  int64_t workspace_allocations = 0;

  Plan& plan(const ConvShape& s) {
    check_shape(s);
    const ShapeKey key = key_of(s);
    auto found = plans.find(key);
    if (found != plans.end()) return *found->second;
    // Built before it is inserted: a shape cuDNN rejects leaves no empty entry behind.
    auto plan = std::make_unique<Plan>(s, math);
    return *plans.emplace(key, std::move(plan)).first->second;
  }

  void* workspace_for(size_t bytes) {
    if (bytes > workspace.bytes()) {
      workspace = DeviceBuffer();  // free the old block before allocating the larger one
      workspace = allocator ? DeviceBuffer(bytes, *allocator) : DeviceBuffer(bytes);
      ++workspace_allocations;
    }
    return bytes ? workspace.data() : nullptr;
  }
};

DnnHandle::DnnHandle(cudaStream_t stream, bool allow_tf32) : DnnHandle(stream, nullptr, allow_tf32) {}

DnnHandle::DnnHandle(cudaStream_t stream, CachingAllocator& allocator, bool allow_tf32)
    : DnnHandle(stream, &allocator, allow_tf32) {}

DnnHandle::DnnHandle(cudaStream_t stream, CachingAllocator* allocator, bool allow_tf32)
    : impl_(std::make_unique<Impl>()) {
  impl_->allocator = allocator;
  impl_->allow_tf32 = allow_tf32;
  impl_->math = allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
  NNR_CUDNN_CHECK(cudnnCreate(&impl_->handle));
  try {
    NNR_CUDNN_CHECK(cudnnSetStream(impl_->handle, stream));
  } catch (...) {
    cudnnDestroy(impl_->handle);
    throw;
  }
}

DnnHandle::~DnnHandle() {
  impl_->plans.clear();
  if (impl_->handle) log_status("cudnnDestroy", cudnnDestroy(impl_->handle));
}

void DnnHandle::set_stream(cudaStream_t stream) { NNR_CUDNN_CHECK(cudnnSetStream(impl_->handle, stream)); }

void DnnHandle::conv2d_forward(const float* x, const float* w, const ConvShape& s, float* y) {
  Plan& p = impl_->plan(s);
  if (!p.have_fwd) {
    cudnnConvolutionFwdAlgoPerf_t perfs[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int count = 0;
    NNR_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(impl_->handle, p.x, p.w, p.conv, p.y,
                                                           CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &count, perfs));
    p.fwd = pick(perfs, count, impl_->allow_tf32, "forward");
    if (!impl_->allow_tf32) {
      p.fwd.mathType = CUDNN_FMA_MATH;
      NNR_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, CUDNN_FMA_MATH));
      NNR_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(impl_->handle, p.x, p.w, p.conv, p.y, p.fwd.algo,
                                                              &p.fwd.memory));
    }
    p.have_fwd = true;
  }
  NNR_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.fwd.mathType));
  void* ws = impl_->workspace_for(p.fwd.memory);
  const float alpha = 1.0f, beta = 0.0f;
  NNR_CUDNN_CHECK(cudnnConvolutionForward(impl_->handle, &alpha, p.x, x, p.w, w, p.conv, p.fwd.algo, ws, p.fwd.memory,
                                          &beta, p.y, y));
}

void DnnHandle::conv2d_backward_data(const float* dy, const float* w, const ConvShape& s, float* dx) {
  Plan& p = impl_->plan(s);
  if (!p.have_bwd_data) {
    cudnnConvolutionBwdDataAlgoPerf_t perfs[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int count = 0;
    NNR_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(impl_->handle, p.w, p.y, p.conv, p.x,
                                                                CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &count, perfs));
    p.bwd_data = pick(perfs, count, impl_->allow_tf32, "backward-data");
    if (!impl_->allow_tf32) {
      p.bwd_data.mathType = CUDNN_FMA_MATH;
      NNR_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, CUDNN_FMA_MATH));
      NNR_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(impl_->handle, p.w, p.y, p.conv, p.x,
                                                                   p.bwd_data.algo, &p.bwd_data.memory));
    }
    p.have_bwd_data = true;
  }
  NNR_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.bwd_data.mathType));
  void* ws = impl_->workspace_for(p.bwd_data.memory);
  const float alpha = 1.0f, beta = 0.0f;
  NNR_CUDNN_CHECK(cudnnConvolutionBackwardData(impl_->handle, &alpha, p.w, w, p.y, dy, p.conv, p.bwd_data.algo, ws,
                                               p.bwd_data.memory, &beta, p.x, dx));
}

void DnnHandle::conv2d_backward_filter(const float* x, const float* dy, const ConvShape& s, float* dw,
                                       bool accumulate) {
  Plan& p = impl_->plan(s);
  if (!p.have_bwd_filter) {
    cudnnConvolutionBwdFilterAlgoPerf_t perfs[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int count = 0;
    NNR_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
        impl_->handle, p.x, p.y, p.conv, p.w, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &count, perfs));
    p.bwd_filter = pick(perfs, count, impl_->allow_tf32, "backward-filter");
    if (!impl_->allow_tf32) {
      p.bwd_filter.mathType = CUDNN_FMA_MATH;
      NNR_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, CUDNN_FMA_MATH));
      NNR_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(impl_->handle, p.x, p.y, p.conv, p.w,
                                                                     p.bwd_filter.algo, &p.bwd_filter.memory));
    }
    p.have_bwd_filter = true;
  }
  NNR_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.bwd_filter.mathType));
  void* ws = impl_->workspace_for(p.bwd_filter.memory);
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  NNR_CUDNN_CHECK(cudnnConvolutionBackwardFilter(impl_->handle, &alpha, p.x, x, p.y, dy, p.conv, p.bwd_filter.algo, ws,
                                                 p.bwd_filter.memory, &beta, p.w, dw));
}

int64_t DnnHandle::plans_cached() const { return static_cast<int64_t>(impl_->plans.size()); }
size_t DnnHandle::workspace_bytes() const { return impl_->workspace.bytes(); }
int64_t DnnHandle::workspace_allocations() const { return impl_->workspace_allocations; }

}  // namespace nnr::kernels
