#pragma once
// 2-D convolution (cross-correlation, as PyTorch's Conv2d) on NCHW float tensors, weights
// [O, C, KH, KW], square stride and zero padding; three entry points as cuDNN's forward /
// backward-data / backward-filter.
//   *_cpu  the CPU reference (kernels/conv2d.cpp): batched im2col, one gemm_cpu per chunk of
//          samples. samples_per_gemm sets the chunk (0: sized to the cache, at least one chunk per
//          thread); any chunk gives the same result up to fp32 summation order. With the
//          Automatic algorithm, 3x3 stride-1 layers of at least kWinogradMinChannels input and
//          output channels run Winograd F(2x2, 3x3) instead (kernels/conv2d_winograd.h: 2.25x
//          fewer FLOPs, the same result to fp32 rounding); Im2col forces the reference.
//   CUDA   DnnHandle's members (kernels/cuda/dnn_handle.h, defined in kernels/conv2d.cu): cuDNN.
#include <cstdint>

namespace nnr::kernels {

struct ConvShape {
  int64_t n = 1, c = 1, h = 1, w = 1;  // input [n, c, h, w]
  int64_t o = 1, kh = 1, kw = 1;       // weight [o, c, kh, kw]
  int64_t stride = 1, padding = 0;
  int64_t out_h() const { return (h + 2 * padding - kh) / stride + 1; }
  int64_t out_w() const { return (w + 2 * padding - kw) / stride + 1; }
};

enum class ConvAlgorithm { Automatic, Im2col, Winograd };

// Below this many input or output channels a Winograd GEMM's inner dimension is too short to pay
// for its transforms (the CNN's first layer, 1 -> 32 channels, stays on im2col).
constexpr int64_t kWinogradMinChannels = 8;

// The algorithm Automatic picks for a shape (Winograd only where winograd_fits and both channel
// counts reach kWinogradMinChannels); an explicit choice is returned as it is. The environment
// variable NNR_CONV_ALGORITHM (read once per process) overrides Automatic's pick for comparisons:
// "im2col" everywhere, "winograd" wherever it fits, "auto" (or unset) as above; any other value
// throws std::invalid_argument naming it.
ConvAlgorithm parse_conv_algorithm(const char* value);  // nullptr or "" -> Automatic
ConvAlgorithm conv_algorithm_for(const ConvShape& shape, ConvAlgorithm requested = ConvAlgorithm::Automatic);

// y = conv(x, w) (+ bias[o] per output channel when bias is non-null); overwrites y.
void conv2d_forward_cpu(const float* x, const float* w, const float* bias, const ConvShape& shape, float* y,
                        int64_t samples_per_gemm = 0, ConvAlgorithm algorithm = ConvAlgorithm::Automatic);
// dx = conv_transpose(dy, w); overwrites dx.
void conv2d_backward_data_cpu(const float* dy, const float* w, const ConvShape& shape, float* dx,
                              int64_t samples_per_gemm = 0, ConvAlgorithm algorithm = ConvAlgorithm::Automatic);
// dw[r] += Σ_n dy[n, r] ⋆ x[n] for the `open_rows` filters `rows` (every filter when rows is null).
void conv2d_backward_filter_cpu(const float* x, const float* dy, const ConvShape& shape, const int64_t* rows,
                                int64_t open_rows, float* dw, int64_t samples_per_gemm = 0,
                                ConvAlgorithm algorithm = ConvAlgorithm::Automatic);

}  // namespace nnr::kernels
