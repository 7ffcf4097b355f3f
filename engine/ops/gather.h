#pragma once
// Gather and scatter-add of selected rows, for the gradients of the output neurons (Linear) or
// filters (Conv2d) that an UpdateMask opens: the layer gathers the open channels of dy, computes
// a compact gradient, and adds it back into the open rows of the parameter's grad. CPU loops are
// the reference of the CUDA kernels (kernels/gather.h).
#include <cstdint>
#include <vector>

#include "engine/core/device_copy.h"
#include "engine/core/tensor.h"

namespace nnr {

// The row indices an op reads, on the op's device (see engine/core/device_copy.h).
using RowIndex = DeviceCopy<int64_t>;

// dst[n, r, ...] = src[n, rows[r], ...]: the channels `rows` (axis 1) of src [N, C, ...] into dst
// [N, count, ...]. `rows` comes from RowIndex::on(src.placement(), ...); every index is in [0, C).
void gather_channels(const Tensor& src, const int64_t* rows, int64_t count, Tensor& dst);
// dst[n, rows[r], ...] = src[n, r, ...]: the inverse of gather_channels (src [N, count, ...] into
// dst [N, C, ...] with the same other dimensions); the other channels of dst keep their values.
// `rows` as for gather_channels, distinct.
void scatter_channels(const Tensor& src, const int64_t* rows, Tensor& dst);
// dst[rows[r], ...] += src[r, ...] for r < src.dim(0): src [count, ...] into dst [R, ...] with the
// same trailing shape. The indices must be distinct.
void scatter_add_rows(const Tensor& src, const int64_t* rows, Tensor& dst);

// db[c] += the sum of dy[:, c, ...] over every axis but 1, for the channels c in `rows` only (the
// bias gradient of the open output neurons or filters), read in place; `index` carries the rows to
// the device. Each channel's sum is bias_backward's.
void bias_backward_rows(const Tensor& dy, const std::vector<int64_t>& rows, RowIndex& index, Tensor& db);

}  // namespace nnr
