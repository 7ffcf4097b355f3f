#pragma once
// Tensor: float32, contiguous, row-major, rank 0..4 (NCHW for images). It owns its memory
// (64-byte aligned, so Eigen and AVX-512 loads need no peeling), is move-only, and copies only
// through clone(). The device field is where the data lives; this build's tensors are CPU
// tensors, and ops check the field so a CUDA tensor reaching a CPU op is an error, not a crash.
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace nnr {

class Rng;

enum class Device { CPU, CUDA };
const char* device_name(Device d);

using Shape = std::vector<int64_t>;
std::string shape_to_string(const Shape& shape);
int64_t shape_numel(const Shape& shape);

class Tensor {
 public:
  static constexpr int kMaxRank = 4;

  Tensor() = default;
  // Zero-filled tensor of the given shape.
  explicit Tensor(Shape shape, Device device = Device::CPU);
  Tensor(std::initializer_list<int64_t> shape) : Tensor(Shape(shape)) {}
  static Tensor from_vector(Shape shape, const std::vector<float>& values);
  // Uninitialised storage: for outputs that an op overwrites in full.
  static Tensor empty(Shape shape, Device device = Device::CPU);

  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;

  Tensor clone() const;

  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const;  // negative i counts from the end
  int64_t numel() const { return numel_; }
  // False only for a default-constructed tensor (no shape at all).
  bool defined() const { return defined_; }
  Device device() const { return device_; }
  size_t bytes() const { return static_cast<size_t>(numel_) * sizeof(float); }

  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  float& operator[](int64_t i) { return data_.get()[i]; }
  float operator[](int64_t i) const { return data_.get()[i]; }

  // Same data, new shape; the element count must match.
  void reshape(Shape shape);
  void fill(float value);
  void zero() { fill(0.0f); }
  std::vector<float> to_vector() const;

 private:
  struct FreeDeleter {
    void operator()(float* p) const;
  };
  Tensor(Shape shape, Device device, bool zero_fill);

  Shape shape_;
  int64_t numel_ = 0;
  Device device_ = Device::CPU;
  bool defined_ = false;
  std::unique_ptr<float[], FreeDeleter> data_;
};

// Throws nnr::Error naming `op` unless t is a CPU tensor.
void require_cpu(const Tensor& t, const char* op);
// Throws nnr::InvalidArgument naming `op` unless t has exactly `expected` shape.
void require_shape(const Tensor& t, const Shape& expected, const char* op, const char* what);

// Seeded initialisation. He (Kaiming) normal with std sqrt(2 / fan_in) for layers followed by
// ReLU; Xavier (Glorot) uniform in ±sqrt(6 / (fan_in + fan_out)) otherwise.
void init_he_normal(Tensor& t, int64_t fan_in, Rng& rng);
void init_xavier_uniform(Tensor& t, int64_t fan_in, int64_t fan_out, Rng& rng);
void init_uniform(Tensor& t, float low, float high, Rng& rng);

}  // namespace nnr
