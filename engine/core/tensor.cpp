#include "engine/core/tensor.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>

#include "engine/core/backend.h"
#include "engine/core/context.h"
#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "kernels/thread_pool.h"

namespace nnr {

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

std::string shape_to_string(const Shape& shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

bool try_shape_numel(const Shape& shape, int64_t& numel) {
  int64_t n = 1;
  for (int64_t d : shape)
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return false;
  numel = n;
  return true;
}

int64_t shape_numel(const Shape& shape) {
  for (int64_t d : shape)
    if (d < 0) throw InvalidArgument("[tensor] negative dimension in shape " + shape_to_string(shape));
  int64_t n = 0;
  if (!try_shape_numel(shape, n))
    throw InvalidArgument("[tensor] shape " + shape_to_string(shape) +
                          " is implausibly large: its element count overflows int64");
  return n;
}

namespace {

// Host storage is 64-byte aligned (one cache line, one AVX-512 register). It comes from plain malloc,
// over-allocated and aligned here, with malloc's own pointer kept in the 8 bytes before the data,
// not from aligned_alloc: glibc serves aligned_alloc/memalign by splitting a larger free chunk, and
// a training step's pattern (buffers of a few MiB allocated, written and freed in turn) then never
// reused the freed chunks: the heap grew by brk and every step page-faulted its outputs in afresh
// (a 12 + 20 + 4 MiB step: 3 000-9 000 faults a step with aligned_alloc, none with malloc). Measured
// on the CNN (bench/results/host-storage-malloc.json): peak RSS of `nnr train` 0.85x, the step's page
// faults 0.47x, speed unchanged.
constexpr size_t kHostAlignment = 64;

float* allocate_host_floats(size_t bytes) {
  void* raw = std::malloc(bytes + kHostAlignment);  // malloc's 16-byte alignment leaves 16 to 64 bytes before
  if (!raw) throw std::bad_alloc();
  const uintptr_t aligned = (reinterpret_cast<uintptr_t>(raw) + kHostAlignment) & ~uintptr_t{kHostAlignment - 1};
  reinterpret_cast<void**>(aligned)[-1] = raw;
  return reinterpret_cast<float*>(aligned);
}

void free_host_floats(float* p) { std::free(reinterpret_cast<void**>(p)[-1]); }

}  // namespace

void TensorMemoryRelease::operator()(float* p) const {
  if (context)
    context->deallocate_floats(p, bytes);
  else
    free_host_floats(p);
}

Tensor::Tensor(Shape shape, Placement placement, bool zero_fill)
    : shape_(std::move(shape)), device_(placement.device), context_(placement.context) {
  if (shape_.size() > static_cast<size_t>(kMaxRank))
    throw InvalidArgument("[tensor] rank " + std::to_string(shape_.size()) + " > " + std::to_string(kMaxRank) +
                          " for shape " + shape_to_string(shape_));
  for (int64_t d : shape_)
    if (d < 0) throw InvalidArgument("[tensor] negative dimension in shape " + shape_to_string(shape_));
  if (device_ == Device::CPU) context_ = nullptr;
  if (device_ == Device::CUDA && !context_)
    throw Error("[tensor] a cuda tensor needs a Context (Tensor(shape, Placement::cuda(ctx)))");
  numel_ = shape_numel(shape_);
  // bytes() and the rounded-up host allocation below must not wrap around size_t.
  if (static_cast<uint64_t>(numel_) > (SIZE_MAX - 63) / sizeof(float))
    throw InvalidArgument("[tensor] shape " + shape_to_string(shape_) + " is implausibly large: " +
                          std::to_string(numel_) + " float32 elements overflow the byte count");
  defined_ = true;
  if (numel_ > 0 && device_ == Device::CUDA) {
    float* p = context_->allocate_floats(bytes());
    data_ = std::unique_ptr<float[], TensorMemoryRelease>(p, TensorMemoryRelease{context_, bytes()});
    if (zero_fill) context_->zero_bytes(p, bytes());
  } else if (numel_ > 0) {
    // A whole number of 64-byte lines: vector loops may read the last line whole.
    const size_t bytes = ((static_cast<size_t>(numel_) * sizeof(float) + 63) / 64) * 64;
    float* p = allocate_host_floats(bytes);
    data_.reset(p);
    if (zero_fill) std::memset(p, 0, bytes);
  }
}

Tensor::Tensor(Shape shape, Device device) : Tensor(std::move(shape), Placement{device, nullptr}, true) {}
Tensor::Tensor(Shape shape, Placement placement) : Tensor(std::move(shape), placement, true) {}

Tensor Tensor::empty(Shape shape, Device device) { return Tensor(std::move(shape), Placement{device, nullptr}, false); }
Tensor Tensor::empty(Shape shape, Placement placement) { return Tensor(std::move(shape), placement, false); }

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
  Tensor t = empty(shape_, placement());
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(Device device, Context& ctx) const {
  if (!defined_) return Tensor();
  if (device == device_ && (device == Device::CPU || context_ == &ctx)) return clone();
  if (device_ == Device::CUDA && context_ != &ctx && device == Device::CUDA)
    throw Error("[tensor] copies between two cuda contexts are not supported");
  if (device == Device::CPU) return to_cpu();
  Tensor t = empty(shape_, Placement::cuda(ctx));
  if (numel_) ctx.upload(t.data(), data(), bytes());
  return t;
}

Tensor Tensor::to_cpu() const {
  if (!defined_) return Tensor();
  if (device_ == Device::CPU) return clone();
  Tensor t = empty(shape_);
  if (numel_) context_->download(t.data(), data(), bytes());
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  if (src.numel_ != numel_ || src.device_ != device_ || src.context_ != context_)
    throw InvalidArgument("[tensor] copy_from: " + shape_to_string(src.shape_) + " on " + device_name(src.device_) +
                          " into " + shape_to_string(shape_) + " on " + device_name(device_) +
                          " (needs the same element count and device)");
  if (!numel_) return;
  if (device_ == Device::CUDA)
    context_->copy_on_device(data(), src.data(), bytes());
  else
    std::memcpy(data(), src.data(), bytes());
}

void Tensor::throw_not_on_host(const char* what) const {
  throw Error(std::string("[tensor] ") + what + " reads host memory, but this tensor " + shape_to_string(shape_) +
              " is on " + device_name(device_) + " (copy it with to_cpu() first)");
}

int64_t Tensor::dim(int i) const {
  const int r = rank();
  const int j = i < 0 ? i + r : i;
  if (j < 0 || j >= r)
    throw InvalidArgument("[tensor] dim " + std::to_string(i) + " out of range for shape " + shape_to_string(shape_));
  return shape_[j];
}

void Tensor::reshape(Shape shape) {
  int64_t n = 0;
  if (shape.size() > static_cast<size_t>(kMaxRank) || !try_shape_numel(shape, n) || n != numel_)
    throw InvalidArgument("[reshape] cannot view " + shape_to_string(shape_) + " as " + shape_to_string(shape));
  shape_ = std::move(shape);
}

// Host fills of at least this many floats are split across the loop's threads.
constexpr int64_t kParallelFillFloats = int64_t{1} << 16;

void Tensor::fill(float value) {
  if (device_ == Device::CUDA) {
    if (value != 0.0f) throw_not_on_host("fill with a non-zero value");
    if (numel_) context_->zero_bytes(data(), bytes());
    return;
  }
  float* p = data();
  // zero_grad fills every gradient each step: large ones on the loop's threads.
  kernels::parallel_ranges(numel_, [&](int, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) p[i] = value;
  }, numel_ >= kParallelFillFloats ? kernels::loop_threads() : 1);
}

std::vector<float> Tensor::to_vector() const {
  if (device_ != Device::CPU) throw_not_on_host("to_vector");
  return std::vector<float>(data(), data() + numel_); }

void require_cpu(const Tensor& t, const char* op) {
  if (t.device() != Device::CPU) throw_not_implemented_on_cuda(op);
}

void require_placement(const Tensor& t, const Placement& where, const char* op, const char* what) {
  if (t.device() != where.device || (where.device == Device::CUDA && t.context() != where.context))
    throw Error(std::string("[") + op + "] " + what + " is on " + device_name(t.device()) +
                (t.device() == where.device ? " of another Context" : "") + ", expected " +
                device_name(where.device) + " (all tensors of an op must live on one device)");
}

void throw_not_implemented_on_cuda(const char* op) {
  std::string why;  // says why when there is no CUDA backend at all (e.g. built without CUDA)
  const bool have_cuda = cuda_library(&why) != nullptr;
  throw Error(std::string("[") + op + "] not implemented on CUDA" + (have_cuda ? "" : " (" + why + ")"));
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
