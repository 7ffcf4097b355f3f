#pragma once
// The backend interface: how the engine's ops reach a device. Each device has one Backend that
// implements every op on raw pointers of that device (the engine's ops in engine/ops and the
// optimizer validate tensors and then make exactly one call here):
//   - the CPU backend (engine/core/cpu_backend.cpp) is built in and calls the *_cpu references of
//     kernels/<op>.h;
//   - the CUDA backend (kernels/cuda/cuda_backend.cpp) lives in the shared library libnnr_cuda.so
//     with every CUDA kernel, cuBLAS and cuDNN. It is loaded with dlopen the first time a CUDA
//     device is asked for (Context, PinnedHostBuffer), so a CPU run never loads a CUDA library
//     and nnr starts on a machine without them (engine/core/backend.cpp).
// A CUDA backend object is one device's state (stream, allocator, cuBLAS/cuDNN handles): it is what
// a Context owns. Pointers an op receives live on its backend's device.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "engine/core/rng.h"
#include "kernels/conv2d.h"
#include "kernels/masked_update.h"
#include "kernels/max_pool.h"

namespace nnr {

class Tensor;

namespace kernels {
class CachingAllocator;
class BlasHandle;
class DnnHandle;
}  // namespace kernels

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // GEMM (kernels/gemm.h).
  virtual void gemm(const float* a, bool transpose_a, const float* b, bool transpose_b, float* c, int64_t m,
                    int64_t n, int64_t k, float alpha, float beta) = 0;
  // Convolution (kernels/conv2d.h); backward_filter adds into the `open` filters `rows` of dw (rows
  // on this device; null: every filter).
  virtual void conv2d_forward(const float* x, const float* w, const float* bias, const kernels::ConvShape& shape,
                              float* y) = 0;
  virtual void conv2d_backward_data(const float* dy, const float* w, const kernels::ConvShape& shape, float* dx) = 0;
  virtual void conv2d_backward_filter(const float* x, const float* dy, const kernels::ConvShape& shape,
                                      const int64_t* rows, int64_t open, float* dw) = 0;
  // Elementwise (kernels/elementwise.h).
  virtual void add_bias(float* y, const float* bias, int64_t outer, int64_t channels, int64_t inner) = 0;
  virtual void bias_backward(const float* dy, float* db, int64_t outer, int64_t channels, int64_t inner,
                             bool accumulate) = 0;
  // db[rows[k]] += the channel sum of dy for k < count (rows on this device).
  virtual void bias_backward_rows(const float* dy, float* db, int64_t outer, int64_t channels, int64_t inner,
                                  const int64_t* rows, int64_t count) = 0;
  virtual void relu_forward(const float* x, float* y, int64_t n) = 0;
  virtual void relu_backward(const float* y, const float* dy, float* dx, int64_t n) = 0;
  virtual void dropout_forward(const float* x, float rate, Rng& rng, float* y, float* mask, int64_t n) = 0;
  virtual void dropout_backward(const float* mask, const float* dy, float* dx, int64_t n) = 0;
  // Gather / scatter of rows (kernels/gather.h).
  virtual void gather_channels(const float* src, int64_t outer, int64_t channels, int64_t inner,
                               const int64_t* rows, int64_t count, float* dst) = 0;
  virtual void scatter_channels(const float* src, int64_t outer, int64_t count, int64_t inner, const int64_t* rows,
                                int64_t channels, float* dst) = 0;
  virtual void scatter_add_rows(const float* src, int64_t count, int64_t row_length, const int64_t* rows,
                                float* dst) = 0;
  // Max pooling (kernels/max_pool.h); backward overwrites dx (shape.planes · height · width entries).
  virtual void max_pool2d_forward(const float* x, const kernels::PoolShape& shape, float* y, int64_t* argmax) = 0;
  // relu_y: the input is a ReLU's output and dx that ReLU's input gradient (kernels/max_pool.h); or null.
  virtual void max_pool2d_backward(const float* dy, const int64_t* argmax, const kernels::PoolShape& shape,
                                   float* dx, const float* relu_y) = 0;
  // Softmax cross-entropy (kernels/softmax_cross_entropy.h). forward returns the mean loss (the CUDA
  // backend waits for it); forward_queued writes it to `loss` on this device and does not wait.
  virtual double softmax_cross_entropy_forward(const float* logits, const int32_t* labels, int64_t n, int64_t k,
                                               float* probs) = 0;
  virtual void softmax_cross_entropy_forward_queued(const float* logits, const int32_t* labels, int64_t n, int64_t k,
                                                    float* probs, double* loss) = 0;
  virtual void softmax_cross_entropy_backward(const float* probs, const int32_t* labels, int64_t n, int64_t k,
                                              float scale, float* dlogits) = 0;
  virtual void softmax(const float* logits, int64_t n, int64_t k, float* probs) = 0;
  // Fused masked updates (kernels/masked_update.h); each returns the penalty value when asked (the
  // CUDA backend then waits for it), else 0.
  virtual double penalty_value(const float* theta, int64_t n, const kernels::PenaltyArgs& penalty) = 0;
  virtual double sgd_update(float* theta, const float* grad, float* velocity, int64_t n,
                            const kernels::SgdArgs& config, const kernels::MaskArgs& mask,
                            const kernels::PenaltyArgs& penalty) = 0;
  virtual double adam_update(float* theta, const float* grad, float* m, float* v, int64_t n, int64_t step,
                             const kernels::AdamArgs& config, const kernels::MaskArgs& mask,
                             const kernels::PenaltyArgs& penalty) = 0;
};

// Work recorded once on a device's stream and replayed with one launch (CapturedStep).
class RecordedWork {
 public:
  // Waits for the stream, then frees the recording and its memory pool.
  virtual ~RecordedWork() = default;
  virtual void replay() = 0;
};

// Host memory copies can read or fill without waiting (PinnedHostBuffer).
class PinnedMemory {
 public:
  virtual ~PinnedMemory() = default;
  virtual void* data() = 0;
  virtual size_t bytes() const = 0;
};

// A device's backend together with its memory, stream and library handles: what a Context owns.
// The members mirror Context's (engine/core/context.h), which forwards to them.
class DeviceBackend : public Backend {
 public:
  virtual std::string gpu_name() const = 0;
  virtual void synchronize() = 0;
  virtual float* allocate_floats(size_t bytes) = 0;
  virtual void deallocate_floats(float* block, size_t bytes) noexcept = 0;
  virtual void upload(void* device_dst, const void* host_src, size_t bytes) = 0;
  virtual void download(void* host_dst, const void* device_src, size_t bytes) = 0;
  virtual void copy_on_device(void* device_dst, const void* device_src, size_t bytes) = 0;
  virtual int64_t workspace_generation() const = 0;
  virtual void queue_upload(void* device_dst, const void* pinned_src, size_t bytes) = 0;
  virtual void queue_download(void* pinned_dst, const void* device_src, size_t bytes) = 0;
  virtual void zero_bytes(void* device_dst, size_t bytes) = 0;
  // Records the device work `work` queues (see CapturedStep::record); throws nnr::Error on failure.
  virtual std::unique_ptr<RecordedWork> record(const std::function<void()>& work) = 0;
  // The CUDA objects, for tests and benchmarks that look inside (kernels/cuda_stream.h).
  virtual cudaStream_t stream() const = 0;
  virtual kernels::CachingAllocator& allocator() = 0;
  virtual kernels::BlasHandle& blas() = 0;
  virtual kernels::DnnHandle& dnn() = 0;
};

// What the CUDA backend library exports (its one entry point, nnr_cuda_backend, returns it).
class DeviceLibrary {
 public:
  virtual ~DeviceLibrary() = default;
  // Empty when device 0 is usable, else why not.
  virtual std::string why_unavailable() = 0;
  virtual std::unique_ptr<DeviceBackend> open(int device_index) = 0;
  virtual std::unique_ptr<PinnedMemory> pinned(size_t bytes) = 0;
};
// The entry point's name and type (extern "C" in kernels/cuda/cuda_backend.cpp).
constexpr const char* kDeviceLibraryEntryPoint = "nnr_cuda_backend";
using DeviceLibraryEntryPoint = DeviceLibrary* (*)();

// The built-in CPU backend.
Backend& cpu_backend();
// The CUDA backend library, loaded on the first call: null when it cannot be, with the reason in
// *why ("nnr was built without CUDA ...", or the loader's message naming the missing library).
DeviceLibrary* cuda_library(std::string* why);
// The backend that runs ops on t: the CPU's, or t's Context's.
Backend& backend_of(const Tensor& t);

}  // namespace nnr
