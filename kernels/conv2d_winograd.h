#pragma once
// Winograd F(2x2, 3x3) convolution on the CPU (Lavin & Gray, "Fast Algorithms for Convolutional
// Neural Networks", 2016) for 3x3 stride-1 layers: a 2x2 output tile costs 16 products per
// (input, output channel) pair instead of 36, so each direction runs 16 GEMMs of [O, C] x
// [C, tiles] instead of one [O, 9C] x [9C, pixels] GEMM: 2.25x fewer FLOPs, at a GEMM efficiency
// close to im2col's on nnr's CNN shapes. Same contracts as the im2col entry points in
// kernels/conv2d.h, which stay the reference (tests/kernels/conv2d_winograd_cpu_test.cpp);
// results agree with them to fp32 rounding of the transforms (about 1e-6 of the result's norm).
#include <cstdint>

#include "kernels/conv2d.h"

namespace nnr::kernels {

// The shapes the Winograd path computes: 3x3 kernel, stride 1, padding 0-2 (backward-data runs
// the same algorithm with padding 2 − p).
bool winograd_fits(const ConvShape& shape);

void conv2d_forward_winograd_cpu(const float* x, const float* w, const float* bias, const ConvShape& shape, float* y);
void conv2d_backward_data_winograd_cpu(const float* dy, const float* w, const ConvShape& shape, float* dx);
void conv2d_backward_filter_winograd_cpu(const float* x, const float* dy, const ConvShape& shape, const int64_t* rows,
                                         int64_t open_rows, float* dw);

}  // namespace nnr::kernels
