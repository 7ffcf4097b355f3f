// The CUDA backend (engine/core/backend.h): one device's stream, caching allocator, cuBLAS and cuDNN
// handles, and every op through its launcher in kernels/<op>.cu. Built into libnnr_cuda.so with the
// kernels; the engine loads it with dlopen (engine/core/backend.cpp) and finds it through its one
// exported entry point, nnr_cuda_backend.
#include <cuda_runtime_api.h>

#include <cstdio>
#include <exception>
#include <memory>
#include <string>

#include "engine/core/backend.h"
#include "engine/core/error.h"
#include "kernels/cuda/blas_handle.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_memory.h"
#include "kernels/cuda/dnn_handle.h"
#include "kernels/cuda/graph.h"
#include "kernels/elementwise.h"
#include "kernels/gather.h"
#include "kernels/gemm.h"
#include "kernels/masked_update.h"
#include "kernels/max_pool.h"
#include "kernels/softmax_cross_entropy.h"

namespace nnr::kernels {
namespace {

constexpr int kMinComputeMajor = 8;  // the kernels carry sm_80 / sm_90 code and compute_90 PTX

std::string why_cuda_unavailable() {
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) return std::string("no usable CUDA device (") + cudaGetErrorString(status) + ")";
  if (count == 0) return "no usable CUDA device (0 devices)";
  cudaDeviceProp prop{};
  status = cudaGetDeviceProperties(&prop, 0);
  if (status != cudaSuccess) return std::string("no usable CUDA device (") + cudaGetErrorString(status) + ")";
  if (prop.major < kMinComputeMajor)
    return std::string("no usable CUDA device (") + prop.name + " has compute capability " +
           std::to_string(prop.major) + "." + std::to_string(prop.minor) + "; nnr needs 8.0 or newer)";
  status = cudaFree(nullptr);  // creates the CUDA context: fails when the device is busy or broken
  if (status != cudaSuccess) return std::string("no usable CUDA device (") + cudaGetErrorString(status) + ")";
  return {};
}

// The penalty arguments plus the device double that receives the value when one is asked for.
struct DevicePenalty {
  PenaltyArgs args;
  DeviceBuffer value;
  DevicePenalty(const PenaltyArgs& p, CachingAllocator& allocator) : args(p) {
    args.want_value = p.want_value && p.anchor;
    args.value = nullptr;
    if (args.want_value) {
      value = DeviceBuffer(sizeof(double), allocator);
      args.value = value.as<double>();
    }
  }
  double read(cudaStream_t stream) const {
    if (!args.want_value) return 0.0;
    double host = 0.0;
    value.copy_to_host(&host, sizeof(double), stream);
    return host;
  }
};

class CudaRecordedWork final : public RecordedWork {
 public:
  CudaRecordedWork(CapturedGraph graph, CachingAllocator& allocator, CachingAllocator::PoolId pool,
                   cudaStream_t stream)
      : graph_(std::move(graph)), allocator_(allocator), pool_(pool), stream_(stream) {}
  ~CudaRecordedWork() override {
    // A replay may still be running: its graph and pool must outlive it.
    const cudaError_t status = cudaStreamSynchronize(stream_);
    if (status != cudaSuccess) std::fprintf(stderr, "[cuda-graph] stream sync failed: %s\n", cudaGetErrorString(status));
    graph_ = CapturedGraph();
    if (pool_) allocator_.release_pool(pool_);
  }
  void replay() override { graph_.launch(stream_); }

 private:
  CapturedGraph graph_;
  CachingAllocator& allocator_;
  CachingAllocator::PoolId pool_;
  cudaStream_t stream_;
};

class CudaPinnedMemory final : public PinnedMemory {
 public:
  explicit CudaPinnedMemory(size_t bytes) : buffer_(bytes) {}
  void* data() override { return buffer_.data(); }
  size_t bytes() const override { return buffer_.bytes(); }

 private:
  PinnedBuffer buffer_;
};

class CudaBackend final : public DeviceBackend {
 public:
  explicit CudaBackend(int device_index) : device_index_(device_index) {
    NNR_CUDA_CHECK(cudaSetDevice(device_index));
    NNR_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    allocator_ = std::make_unique<CachingAllocator>();
    blas_ = std::make_unique<BlasHandle>(stream_, *allocator_);
  }
  // The handles (which may hold allocator memory) go before the allocator, and everything before
  // the stream.
  ~CudaBackend() override {
    dnn_.reset();
    blas_.reset();
    if (stream_) {
      const cudaError_t status = cudaStreamSynchronize(stream_);
      if (status != cudaSuccess) std::fprintf(stderr, "[context] stream sync failed: %s\n", cudaGetErrorString(status));
    }
    allocator_.reset();
    if (stream_) cudaStreamDestroy(stream_);
  }

  const char* name() const override { return "cuda"; }

  // ---- memory and the stream
  std::string gpu_name() const override {
    cudaDeviceProp prop{};
    NNR_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_index_));
    return prop.name;
  }
  void synchronize() override { NNR_CUDA_CHECK(cudaStreamSynchronize(stream_)); }
  float* allocate_floats(size_t bytes) override { return static_cast<float*>(allocator_->allocate(bytes)); }
  void deallocate_floats(float* block, size_t bytes) noexcept override { allocator_->deallocate(block, bytes); }
  void upload(void* device_dst, const void* host_src, size_t bytes) override {
    if (!bytes) return;
    NNR_CUDA_CHECK(cudaMemcpyAsync(device_dst, host_src, bytes, cudaMemcpyHostToDevice, stream_));
    // Pageable host memory: the caller may reuse it as soon as we return, so wait for the copy.
    NNR_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void download(void* host_dst, const void* device_src, size_t bytes) override {
    if (!bytes) return;
    NNR_CUDA_CHECK(cudaMemcpyAsync(host_dst, device_src, bytes, cudaMemcpyDeviceToHost, stream_));
    NNR_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void copy_on_device(void* device_dst, const void* device_src, size_t bytes) override {
    if (!bytes) return;
    NNR_CUDA_CHECK(cudaMemcpyAsync(device_dst, device_src, bytes, cudaMemcpyDeviceToDevice, stream_));
  }
  void queue_upload(void* device_dst, const void* pinned_src, size_t bytes) override {
    if (!bytes) return;
    NNR_CUDA_CHECK(cudaMemcpyAsync(device_dst, pinned_src, bytes, cudaMemcpyHostToDevice, stream_));
  }
  void queue_download(void* pinned_dst, const void* device_src, size_t bytes) override {
    if (!bytes) return;
    NNR_CUDA_CHECK(cudaMemcpyAsync(pinned_dst, device_src, bytes, cudaMemcpyDeviceToHost, stream_));
  }
  void zero_bytes(void* device_dst, size_t bytes) override {
    if (!bytes) return;
    NNR_CUDA_CHECK(cudaMemsetAsync(device_dst, 0, bytes, stream_));
  }
  int64_t workspace_generation() const override { return dnn_ ? dnn_->workspace_allocations() : 0; }
  std::unique_ptr<RecordedWork> record(const std::function<void()>& work) override {
    CachingAllocator& allocator = *allocator_;
    const CachingAllocator::PoolId pool = allocator.begin_capture_pool();
    CapturedGraph graph;
    try {
      CapturedGraph::begin_capture(stream_);
      work();
      allocator.end_capture_pool();
      graph = CapturedGraph::end_capture(stream_);
    } catch (const std::exception& e) {
      CapturedGraph::abandon_capture(stream_);
      allocator.end_capture_pool();
      allocator.release_pool(pool);  // nothing recorded will run
      throw Error(std::string("[cuda-graph] the step could not be recorded as a CUDA graph: ") + e.what());
    }
    return std::make_unique<CudaRecordedWork>(std::move(graph), allocator, pool, stream_);
  }
  cudaStream_t stream() const override { return stream_; }
  CachingAllocator& allocator() override { return *allocator_; }
  BlasHandle& blas() override { return *blas_; }
  DnnHandle& dnn() override {
    if (!dnn_) dnn_ = std::make_unique<DnnHandle>(stream_, *allocator_);
    return *dnn_;
  }

  // ---- ops
  void gemm(const float* a, bool ta, const float* b, bool tb, float* c, int64_t m, int64_t n, int64_t k, float alpha,
            float beta) override {
    kernels::gemm(*blas_, a, ta, b, tb, c, m, n, k, alpha, beta);
  }
  void conv2d_forward(const float* x, const float* w, const float* bias, const ConvShape& s, float* y) override {
    dnn().conv2d_forward(x, w, s, y);
    if (bias) kernels::add_bias(y, bias, s.n, s.o, s.out_h() * s.out_w(), stream_);
  }
  void conv2d_backward_data(const float* dy, const float* w, const ConvShape& s, float* dx) override {
    dnn().conv2d_backward_data(dy, w, s, dx);
  }
  void conv2d_backward_filter(const float* x, const float* dy, const ConvShape& s, const int64_t* rows, int64_t open,
                              float* dw) override {
    if (!rows) {
      dnn().conv2d_backward_filter(x, dy, s, dw, /*accumulate=*/true);
      return;
    }
    // Selected filters: gather their dy planes, one cuDNN call for the compact [open, C, K, K]
    // gradient, and add it into the open rows of dw.
    const int64_t pixels = s.out_h() * s.out_w(), patch = s.c * s.kh * s.kw;
    DeviceBuffer dy_open(static_cast<size_t>(s.n * open * pixels) * sizeof(float), *allocator_);
    kernels::gather_channels(dy, s.n, s.o, pixels, rows, open, dy_open.as<float>(), stream_);
    DeviceBuffer dw_open(static_cast<size_t>(open * patch) * sizeof(float), *allocator_);
    ConvShape compact = s;
    compact.o = open;
    dnn().conv2d_backward_filter(x, dy_open.as<float>(), compact, dw_open.as<float>(), /*accumulate=*/false);
    kernels::scatter_add_rows(dw_open.as<float>(), open, patch, rows, dw, stream_);
  }
  void add_bias(float* y, const float* bias, int64_t outer, int64_t channels, int64_t inner) override {
    kernels::add_bias(y, bias, outer, channels, inner, stream_);
  }
  void bias_backward(const float* dy, float* db, int64_t outer, int64_t channels, int64_t inner,
                     bool accumulate) override {
    kernels::bias_backward(dy, db, outer, channels, inner, accumulate, stream_);
  }
  void bias_backward_rows(const float* dy, float* db, int64_t outer, int64_t channels, int64_t inner,
                          const int64_t* rows, int64_t count) override {
    kernels::bias_backward_rows(dy, db, outer, channels, inner, rows, count, stream_);
  }
  void relu_forward(const float* x, float* y, int64_t n) override { kernels::relu_forward(x, y, n, stream_); }
  void relu_backward(const float* y, const float* dy, float* dx, int64_t n) override {
    kernels::relu_backward(y, dy, dx, n, stream_);
  }
  void dropout_forward(const float* x, float rate, Rng& rng, float* y, float* mask, int64_t n) override {
    kernels::dropout_forward(x, rate, rng.next_u64(), y, mask, n, stream_);
  }
  void dropout_backward(const float* mask, const float* dy, float* dx, int64_t n) override {
    kernels::dropout_backward(mask, dy, dx, n, stream_);
  }
  void gather_channels(const float* src, int64_t outer, int64_t channels, int64_t inner, const int64_t* rows,
                       int64_t count, float* dst) override {
    kernels::gather_channels(src, outer, channels, inner, rows, count, dst, stream_);
  }
  void scatter_channels(const float* src, int64_t outer, int64_t count, int64_t inner, const int64_t* rows,
                        int64_t channels, float* dst) override {
    kernels::scatter_channels(src, outer, count, inner, rows, channels, dst, stream_);
  }
  void scatter_add_rows(const float* src, int64_t count, int64_t row_length, const int64_t* rows,
                        float* dst) override {
    kernels::scatter_add_rows(src, count, row_length, rows, dst, stream_);
  }
  void max_pool2d_forward(const float* x, const PoolShape& s, float* y, int64_t* argmax) override {
    kernels::max_pool2d_forward(x, s, y, argmax, stream_);
  }
  void max_pool2d_backward(const float* dy, const int64_t* argmax, const PoolShape& s, float* dx,
                           const float* relu_y) override {
    kernels::max_pool2d_backward(dy, argmax, s, dx, stream_, relu_y);
  }
  double softmax_cross_entropy_forward(const float* logits, const int32_t* labels, int64_t n, int64_t k,
                                       float* probs) override {
    DeviceBuffer loss(sizeof(double), *allocator_);
    kernels::softmax_cross_entropy_forward(logits, labels, n, k, probs, loss.as<double>(), stream_);
    double value = 0.0;
    loss.copy_to_host(&value, sizeof(double), stream_);  // waits: the caller needs the number
    return value;
  }
  void softmax_cross_entropy_forward_queued(const float* logits, const int32_t* labels, int64_t n, int64_t k,
                                            float* probs, double* loss) override {
    kernels::softmax_cross_entropy_forward(logits, labels, n, k, probs, loss, stream_);
  }
  void softmax_cross_entropy_backward(const float* probs, const int32_t* labels, int64_t n, int64_t k, float scale,
                                      float* dlogits) override {
    kernels::softmax_cross_entropy_backward(probs, labels, n, k, scale, dlogits, stream_);
  }
  void softmax(const float* logits, int64_t n, int64_t k, float* probs) override {
    kernels::softmax_forward(logits, n, k, probs, stream_);
  }
  double penalty_value(const float* theta, int64_t n, const PenaltyArgs& penalty) override {
    DevicePenalty p(penalty, *allocator_);
    if (!p.args.want_value) return 0.0;
    kernels::penalty_value(theta, n, p.args, stream_);
    return p.read(stream_);
  }
  double sgd_update(float* theta, const float* grad, float* velocity, int64_t n, const SgdArgs& config,
                    const MaskArgs& mask, const PenaltyArgs& penalty) override {
    DevicePenalty p(penalty, *allocator_);
    kernels::sgd_update(theta, grad, velocity, n, config, mask, p.args, stream_);
    return p.read(stream_);
  }
  double adam_update(float* theta, const float* grad, float* m, float* v, int64_t n, int64_t step,
                     const AdamArgs& config, const MaskArgs& mask, const PenaltyArgs& penalty) override {
    DevicePenalty p(penalty, *allocator_);
    kernels::adam_update(theta, grad, m, v, n, step, config, mask, p.args, stream_);
    return p.read(stream_);
  }

 private:
  int device_index_ = 0;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<CachingAllocator> allocator_;
  std::unique_ptr<BlasHandle> blas_;
  std::unique_ptr<DnnHandle> dnn_;  // created on first use: conv-free models never pay for cuDNN
};

class CudaLibrary final : public DeviceLibrary {
 public:
  std::string why_unavailable() override { return why_cuda_unavailable(); }
  std::unique_ptr<DeviceBackend> open(int device_index) override {
    return std::make_unique<CudaBackend>(device_index);
  }
  std::unique_ptr<PinnedMemory> pinned(size_t bytes) override { return std::make_unique<CudaPinnedMemory>(bytes); }
};

}  // namespace
}  // namespace nnr::kernels

extern "C" __attribute__((visibility("default"))) nnr::DeviceLibrary* nnr_cuda_backend() {
  static nnr::kernels::CudaLibrary library;
  return &library;
}
