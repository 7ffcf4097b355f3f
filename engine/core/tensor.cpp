#include "engine/core/tensor.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>

#include "engine/core/error.h"
#include "engine/core/rng.h"

namespace nnr {

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

std::string shape_to_string(const Shape& shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void Tensor::FreeDeleter::operator()(float* p) const { std::free(p); }

Tensor::Tensor(Shape shape, Device device, bool zero_fill) : shape_(std::move(shape)), device_(device) {
  if (shape_.size() > static_cast<size_t>(kMaxRank))
    throw InvalidArgument("[tensor] rank " + std::to_string(shape_.size()) + " > " + std::to_string(kMaxRank) +
                          " for shape " + shape_to_string(shape_));
  for (int64_t d : shape_)
    if (d < 0) throw InvalidArgument("[tensor] negative dimension in shape " + shape_to_string(shape_));
  if (device_ != Device::CPU)
    throw Error("[tensor] this build allocates CPU tensors only (asked for " + std::string(device_name(device_)) + ")");
  numel_ = shape_numel(shape_);
  defined_ = true;
  if (numel_ > 0) {
    // Round up to a whole number of 64-byte lines, as aligned_alloc requires.
    const size_t bytes = ((static_cast<size_t>(numel_) * sizeof(float) + 63) / 64) * 64;
    float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!p) throw std::bad_alloc();
    data_.reset(p);
    if (zero_fill) std::memset(p, 0, bytes);
  }
}

Tensor::Tensor(Shape shape, Device device) : Tensor(std::move(shape), device, true) {}

Tensor Tensor::empty(Shape shape, Device device) { return Tensor(std::move(shape), device, false); }

Tensor Tensor::from_vector(Shape shape, const std::vector<float>& values) {
  Tensor t = empty(std::move(shape));
  if (static_cast<int64_t>(values.size()) != t.numel())
    throw InvalidArgument("[tensor] " + std::to_string(values.size()) + " values for shape " +
                          shape_to_string(t.shape()));
  if (t.numel()) std::memcpy(t.data(), values.data(), t.bytes());
  return t;
}

Tensor Tensor::clone() const {
  if (!defined_) return Tensor();
  Tensor t = empty(shape_, device_);
  if (numel_) std::memcpy(t.data(), data(), bytes());
  return t;
}

int64_t Tensor::dim(int i) const {
  const int r = rank();
  const int j = i < 0 ? i + r : i;
  if (j < 0 || j >= r)
    throw InvalidArgument("[tensor] dim " + std::to_string(i) + " out of range for shape " + shape_to_string(shape_));
  return shape_[j];
}

void Tensor::reshape(Shape shape) {
  if (shape.size() > static_cast<size_t>(kMaxRank) || shape_numel(shape) != numel_)
    throw InvalidArgument("[reshape] cannot view " + shape_to_string(shape_) + " as " + shape_to_string(shape));
  shape_ = std::move(shape);
}

void Tensor::fill(float value) {
  float* p = data();
  for (int64_t i = 0; i < numel_; ++i) p[i] = value;
}

std::vector<float> Tensor::to_vector() const { return std::vector<float>(data(), data() + numel_); }

void require_cpu(const Tensor& t, const char* op) {
  if (t.device() != Device::CPU)
    throw Error(std::string("[") + op + "] expected a cpu tensor, got " + device_name(t.device()));
}

void require_shape(const Tensor& t, const Shape& expected, const char* op, const char* what) {
  if (t.shape() != expected)
    throw InvalidArgument(std::string("[") + op + "] " + what + ": expected shape " + shape_to_string(expected) +
                          ", got " + shape_to_string(t.shape()));
}

void init_he_normal(Tensor& t, int64_t fan_in, Rng& rng) {
  const double std = std::sqrt(2.0 / static_cast<double>(fan_in));
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<float>(rng.normal() * std);
}

void init_xavier_uniform(Tensor& t, int64_t fan_in, int64_t fan_out, Rng& rng) {
  const double a = std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
  init_uniform(t, static_cast<float>(-a), static_cast<float>(a), rng);
}

void init_uniform(Tensor& t, float low, float high, Rng& rng) {
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<float>(low + (high - low) * rng.uniform());
}

}  // namespace nnr
