#pragma once
// Helpers for the GPU-vs-CPU tests: a stream, typed device arrays that are poisoned (all bits set:
// a NaN for floats, -1 for integers) before each kernel writes them, and comparisons that report
// the first mismatches. Tolerances are passed in by each test, which names and justifies them.
#include <catch2/catch.hpp>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <vector>

#include "engine/core/rng.h"
#include "engine/optim/update_mask.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_memory.h"
#include "kernels/masked_update.h"

namespace nnr::test {

// The sizes every op is tried at: a single row, below a warp, just past a block, and large.
inline const std::vector<int64_t>& awkward_rows() {
  static const std::vector<int64_t> rows{1, 31, 257, 1000};
  return rows;
}

class Stream {
 public:
  Stream() { NNR_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(stream_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  operator cudaStream_t() const { return stream_; }
  void sync() const { NNR_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

 private:
  cudaStream_t stream_ = nullptr;
};

template <typename T>
class DeviceArray {
 public:
  DeviceArray(size_t count, cudaStream_t stream) : count_(count), stream_(stream), buffer_(count * sizeof(T)) {
    poison();
  }
  DeviceArray(const std::vector<T>& host, cudaStream_t stream) : DeviceArray(host.size(), stream) { upload(host); }

  void upload(const std::vector<T>& host) {
    REQUIRE(host.size() == count_);
    buffer_.copy_from_host(host.data(), count_ * sizeof(T), stream_);
  }
  // Every byte 0xFF: a NaN in every float, -1 in every signed integer.
  void poison() { buffer_.fill_bytes(0xFF, stream_); }
  std::vector<T> download() const {
    std::vector<T> host(count_);
    buffer_.copy_to_host(host.data(), count_ * sizeof(T), stream_);
    return host;
  }
  T* get() { return buffer_.as<T>(); }
  const T* get() const { return buffer_.as<T>(); }
  size_t size() const { return count_; }

 private:
  size_t count_;
  cudaStream_t stream_;
  kernels::DeviceBuffer buffer_;
};

// An engine UpdateMask on the device, as the update kernels take it (rows and bits uploaded; a
// placeholder element when a list is empty, so every pointer is valid).
struct DeviceMask {
  DeviceArray<int64_t> rows;
  DeviceArray<uint32_t> bits;
  kernels::MaskArgs args;
  DeviceMask(const UpdateMask& mask, int64_t row_length, cudaStream_t stream)
      : rows(mask.rows.empty() ? std::vector<int64_t>{-1} : mask.rows, stream),
        bits(mask.bits.empty() ? std::vector<uint32_t>{0} : mask.bits, stream) {
    args.kind = mask.kind == UpdateMask::Kind::All    ? kernels::MaskKind::All
                : mask.kind == UpdateMask::Kind::Rows ? kernels::MaskKind::Rows
                                                      : kernels::MaskKind::Elements;
    args.rows = rows.get();
    args.row_count = static_cast<int64_t>(mask.rows.size());
    args.row_length = row_length;
    args.bits = bits.get();
  }
};

inline std::vector<float> random_normal(size_t n, Rng& rng, float scale = 1.0f) {
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(rng.normal()) * scale;
  return v;
}

inline bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

// Passes when |got − want| ≤ rel · scale_i + abs for every i, where scale_i is max(|want_i|,
// magnitude_i) (magnitude may be empty: then |want_i|). NaN anywhere in got fails. Reports the
// first ten mismatches.
inline void require_close(const std::vector<float>& got, const std::vector<float>& want, double rel, double abs,
                          const char* what, const std::vector<double>& magnitude = {}) {
  REQUIRE(got.size() == want.size());
  int64_t bad = 0;
  std::ostringstream first;
  for (size_t i = 0; i < got.size(); ++i) {
    const double scale = std::max(std::fabs(static_cast<double>(want[i])), magnitude.empty() ? 0.0 : magnitude[i]);
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(err <= rel * scale + abs)) {
      if (bad < 10) first << "  [" << i << "] got " << got[i] << " want " << want[i] << " (err " << err << ")\n";
      ++bad;
    }
  }
  INFO(what << ": " << bad << " of " << got.size() << " outside rel " << rel << " abs " << abs << "\n" << first.str());
  REQUIRE(bad == 0);
}

inline void require_bit_identical(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  REQUIRE(got.size() == want.size());
  int64_t bad = 0;
  std::ostringstream first;
  for (size_t i = 0; i < got.size(); ++i)
    if (!same_bits(got[i], want[i])) {
      if (bad < 10) first << "  [" << i << "] got " << got[i] << " want " << want[i] << "\n";
      ++bad;
    }
  INFO(what << ": " << bad << " of " << got.size() << " not bit-identical\n" << first.str());
  REQUIRE(bad == 0);
}

// ‖got − want‖_F / ‖want‖_F (0 when both are zero); NaN in got gives NaN, which fails any ≤.
inline double relative_frobenius(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    diff += d * d;
    norm += static_cast<double>(want[i]) * want[i];
  }
  if (norm == 0.0) return diff == 0.0 ? 0.0 : INFINITY;
  return std::sqrt(diff / norm);
}

}  // namespace nnr::test
