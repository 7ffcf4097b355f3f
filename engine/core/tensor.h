#pragma once
// Tensor: float32, contiguous, row-major, rank 0..4 (NCHW for images). It owns its memory
// (64-byte aligned, so Eigen and AVX-512 loads need no peeling), is move-only, and copies only
// through clone(). The device field is where the data lives. A CUDA tensor's memory comes from
// the Context it was created with (engine/core/context.h), which it remembers so that ops on it
// find their stream and handles without globals; copies between devices are explicit (to()).
// Element access from the host (operator[], to_vector, fill with a non-zero value) is an
// nnr::Error on a CUDA tensor; data() then returns a device pointer, for the ops.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace nnr {

class Context;
class Rng;

enum class Device { CPU, CUDA };
const char* device_name(Device d);

// Where a tensor's memory lives: the device and, for CUDA, the Context that allocates it.
struct Placement {
  Device device = Device::CPU;
  Context* context = nullptr;  // null for CPU; required for CUDA
  static Placement cpu() { return {}; }
  static Placement cuda(Context& ctx) { return {Device::CUDA, &ctx}; }
};

using Shape = std::vector<int64_t>;
std::string shape_to_string(const Shape& shape);
// Number of elements of `shape` (1 for rank 0). An nnr::InvalidArgument naming the shape when a
// dimension is negative or the product overflows int64.
int64_t shape_numel(const Shape& shape);
// The same without throwing: false (numel untouched) when a dimension is negative or the product
// overflows int64, for readers that report a bad shape in their own words.
bool try_shape_numel(const Shape& shape, int64_t& numel);

// A tensor's deleter: frees host memory, or returns device memory to its Context's caching
// allocator. (Outside Tensor: a nested class's member initialisers are not usable inside it.)
struct TensorMemoryRelease {
  Context* context = nullptr;
  size_t bytes = 0;
  void operator()(float* p) const;
};

class Tensor {
 public:
  static constexpr int kMaxRank = 4;

  Tensor() = default;
  // Zero-filled tensor of the given shape.
  // A Device::CUDA without a Context is an nnr::Error: use the Placement overloads.
  explicit Tensor(Shape shape, Device device = Device::CPU);
  Tensor(Shape shape, Placement placement);
  Tensor(std::initializer_list<int64_t> shape) : Tensor(Shape(shape)) {}
  static Tensor from_vector(Shape shape, const std::vector<float>& values);
  // Uninitialised storage: for outputs that an op overwrites in full.
  static Tensor empty(Shape shape, Device device = Device::CPU);
  static Tensor empty(Shape shape, Placement placement);

  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;

  // Same device, same context.
  Tensor clone() const;
  // A copy on `device` (CPU -> CUDA uploads through ctx; CUDA -> CPU downloads and waits).
  // Meant for the edges (batches in, parameters and results out), never inside a step.
  Tensor to(Device device, Context& ctx) const;
  // A CPU copy (a clone when already on the CPU).
  Tensor to_cpu() const;
  // Copies src's elements into this tensor (same device and element count; shapes may differ).
  void copy_from(const Tensor& src);

  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const;  // negative i counts from the end
  int64_t numel() const { return numel_; }
  // False only for a default-constructed tensor (no shape at all).
  bool defined() const { return defined_; }
  Device device() const { return device_; }
  // The context of a CUDA tensor (null for CPU tensors).
  Context* context() const { return context_; }
  Placement placement() const { return {device_, context_}; }
  size_t bytes() const { return static_cast<size_t>(numel_) * sizeof(float); }

  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  float& operator[](int64_t i) {
    if (device_ != Device::CPU) throw_not_on_host("operator[]");
    return data_.get()[i];
  }
  float operator[](int64_t i) const {
    if (device_ != Device::CPU) throw_not_on_host("operator[]");
    return data_.get()[i];
  }

  // Same data, new shape; the element count must match.
  void reshape(Shape shape);
  // Any value on the CPU; on CUDA only 0 (a memset on the context's stream).
  void fill(float value);
  void zero() { fill(0.0f); }
  // CPU tensors only (use to_cpu() first for a CUDA tensor).
  std::vector<float> to_vector() const;

 private:
  Tensor(Shape shape, Placement placement, bool zero_fill);
  [[noreturn]] void throw_not_on_host(const char* what) const;

  Shape shape_;
  int64_t numel_ = 0;
  Device device_ = Device::CPU;
  Context* context_ = nullptr;
  bool defined_ = false;
  std::unique_ptr<float[], TensorMemoryRelease> data_;
};

// Throws nnr::Error "[op] not implemented on CUDA" unless t is a CPU tensor (ops with no CUDA path).
void require_cpu(const Tensor& t, const char* op);
// Throws nnr::Error naming `op` unless t lives on `where` (same device and, for CUDA, same Context).
void require_placement(const Tensor& t, const Placement& where, const char* op, const char* what);
// "[op] not implemented on CUDA" (with "(built without CUDA)" in a CPU-only build).
[[noreturn]] void throw_not_implemented_on_cuda(const char* op);
// Throws nnr::InvalidArgument naming `op` unless t has exactly `expected` shape.
void require_shape(const Tensor& t, const Shape& expected, const char* op, const char* what);

// Seeded initialisation. He (Kaiming) normal with std sqrt(2 / fan_in) for layers followed by
// ReLU; Xavier (Glorot) uniform in ±sqrt(6 / (fan_in + fan_out)) otherwise.
void init_he_normal(Tensor& t, int64_t fan_in, Rng& rng);
void init_xavier_uniform(Tensor& t, int64_t fan_in, int64_t fan_out, Rng& rng);
void init_uniform(Tensor& t, float low, float high, Rng& rng);

}  // namespace nnr
