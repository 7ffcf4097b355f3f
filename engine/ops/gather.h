#pragma once
// Gather and scatter-add of selected rows, for the gradients of the output neurons (Linear) or
// filters (Conv2d) that an UpdateMask opens: the layer gathers the open channels of dy, computes
// a compact gradient, and adds it back into the open rows of the parameter's grad. CPU loops are
// the reference of the CUDA kernels (kernels/gather.h).
#include <cstdint>
#include <vector>

#include "engine/core/tensor.h"

namespace nnr {

// The row indices an op reads, where it runs: on the CPU the host vector itself; on CUDA a device
// copy that is uploaded again only when the list changes (a bandit keeps its selection for a whole
// round, so one upload serves many steps). The Context of the last CUDA placement must outlive it.
class RowIndex {
 public:
  RowIndex() = default;
  ~RowIndex();
  RowIndex(RowIndex&& other) noexcept;
  RowIndex& operator=(RowIndex&& other) noexcept;
  RowIndex(const RowIndex&) = delete;
  RowIndex& operator=(const RowIndex&) = delete;

  // A pointer to `rows` usable by ops on `where` (valid until the next call or destruction).
  const int64_t* on(const Placement& where, const std::vector<int64_t>& rows);

 private:
  void release() noexcept;

  std::vector<int64_t> uploaded_;
  Context* context_ = nullptr;
  float* device_ = nullptr;  // from the Context's allocator (it hands out float*; int64 live here)
  size_t device_bytes_ = 0;
};

// dst[n, r, ...] = src[n, rows[r], ...]: the channels `rows` (axis 1) of src [N, C, ...] into dst
// [N, count, ...]. `rows` comes from RowIndex::on(src.placement(), ...); every index is in [0, C).
void gather_channels(const Tensor& src, const int64_t* rows, int64_t count, Tensor& dst);
// dst[rows[r], ...] += src[r, ...] for r < src.dim(0): src [count, ...] into dst [R, ...] with the
// same trailing shape. The indices must be distinct.
void scatter_add_rows(const Tensor& src, const int64_t* rows, Tensor& dst);

// db[c] += the sum of dy[:, c, ...] over every axis but 1, for the channels c in `rows` only (the
// bias gradient of the open output neurons or filters); `index` carries the rows to the device.
void bias_backward_rows(const Tensor& dy, const std::vector<int64_t>& rows, RowIndex& index, Tensor& db);

}  // namespace nnr
