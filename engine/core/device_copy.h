#pragma once
// DeviceCopy<T>: a host vector's copy where an op runs. On the CPU it is the host vector itself;
// on CUDA a block from the Context's allocator, uploaded again only when the contents change. Used
// for the small integer lists ops read on the device: the rows a weight selection opens (uploaded
// once per round, not per step) and a batch's labels (once per step, read by the loss's forward
// and backward). The Context of the last CUDA placement must outlive it.
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "engine/core/context.h"
#include "engine/core/tensor.h"

namespace nnr {

template <typename T>
class DeviceCopy {
 public:
  DeviceCopy() = default;
  ~DeviceCopy() { release(); }
  DeviceCopy(DeviceCopy&& other) noexcept { take(other); }
  DeviceCopy& operator=(DeviceCopy&& other) noexcept {
    if (this != &other) {
      release();
      take(other);
    }
    return *this;
  }
  DeviceCopy(const DeviceCopy&) = delete;
  DeviceCopy& operator=(const DeviceCopy&) = delete;

  // A pointer to `values` usable by ops on `where` (valid until the next call or destruction).
  const T* on(const Placement& where, const std::vector<T>& values) {
    if (where.device == Device::CPU) return values.data();
    if (context_ == where.context && device_ && uploaded_ == values) return reinterpret_cast<const T*>(device_);
    const size_t bytes = values.size() * sizeof(T);
    if (context_ != where.context || bytes_ < bytes) {
      release();
      context_ = where.context;
      bytes_ = bytes;
      // The allocator hands out float*; its blocks are 256-byte aligned, fit for any T here.
      device_ = bytes ? context_->allocate_floats(bytes) : nullptr;
    }
    if (bytes) context_->upload(device_, values.data(), bytes);
    uploaded_ = values;
    return reinterpret_cast<const T*>(device_);
  }

 private:
  void release() noexcept {
    if (device_) context_->deallocate_floats(device_, bytes_);
    device_ = nullptr;
    bytes_ = 0;
    context_ = nullptr;
    uploaded_.clear();
  }
  void take(DeviceCopy& other) noexcept {
    uploaded_ = std::move(other.uploaded_);
    context_ = std::exchange(other.context_, nullptr);
    device_ = std::exchange(other.device_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }

  std::vector<T> uploaded_;
  Context* context_ = nullptr;
  float* device_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace nnr
