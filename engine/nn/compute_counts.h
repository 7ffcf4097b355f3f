#pragma once
// ComputeCounts: the floating-point work a layer actually executed, split by phase. Every layer
// adds to its own counter in forward (training and inference alike) and backward
// (Layer::compute_counts); Sequential::compute_counts sums them. Counting is a few integer
// multiply-adds per layer call, computed from the shapes, never from the data.
//
// Convention (exact; tests/engine/nn/compute_counts_test.cpp checks it):
//   * A multiply-add is 2 FLOPs. Every other arithmetic element-op (add, multiply, compare,
//     max, select) is 1 FLOP. Data movement is 0: copies, reshapes, zero fills, im2col/col2im
//     index shuffling, gathering dy columns and scattering a compact gradient into its open rows.
//   * N = batch size, r = rows the layer's weight gradient computes: all `out` rows for an
//     All or Elements mask (the GEMM runs in full), the open rows for a Rows mask, 0 for a
//     frozen one; rb = the same for the bias's own mask.
//   * Selective backward (engine/nn/tape.h): above the lowest open layer, a layer's dx is computed
//     only in the channels the layers below read (those the lowest open layer's open rows read,
//     carried up through ReLU, MaxPool2d, Dropout and Flatten); s below counts them. Filling the
//     other channels with 0 is data movement.
//   Linear(in, out):
//     forward            2·N·out·in (x·Wᵀ) + N·out (bias add)
//     weight_grad        2·N·r·in (dW = dyᵀ·x over the open rows) + N·rb (bias gradient sums)
//     input_grad         2·N·out·s (dx = dy·W over the s input features the layers below read:
//                        all `in` unless the tape asks for some only), 0 when dx == nullptr
//   Conv2d(C, O, K) with output pixels P = Ho·Wo:
//     forward            2·N·O·P·C·K·K (the convolution's multiply-adds) + N·O·P (bias add)
//     weight_grad        2·N·r·P·C·K·K + N·rb·P
//     input_grad         2·N·O·P·s·K·K (transposed convolution over the s input channels the layers
//                        below read: all C unless the tape asks for some only), 0 when dx == nullptr
//   ReLU:      forward numel(x) (a max each); input_grad numel(x) when dx is wanted, but
//              numel(y) of the MaxPool2d above it when the tape runs both backwards in one pass
//              (no observer, Layer::backward_through_relu: one compare per pooled value).
//   MaxPool2d(W): forward numel(y)·W·W (one compare per element of each window);
//              input_grad numel(y) when dx is wanted (one add into the argmax of each window).
//   Dropout:   forward numel(x) in training with rate > 0 (one multiply by the mask), else 0
//              (a copy); input_grad numel(x) when dx is wanted and a mask was drawn, else 0.
//   Flatten:   0 everywhere (a copy).
//   The loss (SoftmaxCrossEntropy) is not a layer and is not counted here. The optimizer step
//   is not counted either.
// Counts are taken on the host when the layer's forward/backward is called, so work replayed
// from a recorded CUDA graph (--cuda-graph) is not seen by these counters.
#include <cstdint>
#include <ostream>

namespace nnr {

struct ComputeCounts {
  int64_t forward_flops = 0;
  int64_t input_grad_flops = 0;   // dL/dx
  int64_t weight_grad_flops = 0;  // dL/dW and dL/db

  int64_t total() const { return forward_flops + input_grad_flops + weight_grad_flops; }
  int64_t backward() const { return input_grad_flops + weight_grad_flops; }

  ComputeCounts& operator+=(const ComputeCounts& o) {
    forward_flops += o.forward_flops;
    input_grad_flops += o.input_grad_flops;
    weight_grad_flops += o.weight_grad_flops;
    return *this;
  }
  ComputeCounts& operator-=(const ComputeCounts& o) {
    forward_flops -= o.forward_flops;
    input_grad_flops -= o.input_grad_flops;
    weight_grad_flops -= o.weight_grad_flops;
    return *this;
  }
};

inline ComputeCounts operator+(ComputeCounts a, const ComputeCounts& b) { return a += b; }
// The work done between two snapshots: later - earlier.
inline ComputeCounts operator-(ComputeCounts a, const ComputeCounts& b) { return a -= b; }
inline bool operator==(const ComputeCounts& a, const ComputeCounts& b) {
  return a.forward_flops == b.forward_flops && a.input_grad_flops == b.input_grad_flops &&
         a.weight_grad_flops == b.weight_grad_flops;
}
inline bool operator!=(const ComputeCounts& a, const ComputeCounts& b) { return !(a == b); }
inline std::ostream& operator<<(std::ostream& out, const ComputeCounts& c) {
  return out << "{forward " << c.forward_flops << ", input_grad " << c.input_grad_flops << ", weight_grad "
             << c.weight_grad_flops << "}";
}

}  // namespace nnr
