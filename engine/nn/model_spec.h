#pragma once
// Model specs: a short string that names an architecture, the same one PyTorch would build
// as nn.Sequential, so checkpoints interchange by parameter name.
//
//   mlp:D0-D1-...-Dk[:dropout=P]
//       Linear(D0, D1), ReLU, [Dropout(P)], ..., Linear(Dk-1, Dk). The input may be any shape
//       with D0 values per sample (images are read flat).
//   cnn:CxHxW-ITEM-...-K
//       input C channels of H x W; then, in order:
//         cN[kK][sS]  Conv2d(in, N, K (default 3), stride S (default 1), padding K/2), ReLU
//         p[W]        MaxPool2d(W) (default 2)
//         dP          Dropout(P), e.g. d0.25
//         fN          Linear(in, N), ReLU (a Flatten goes before the first Linear)
//         K           the last item, a plain number: Linear(in, K), the output
//       e.g. cnn:1x28x28-c32-p-c64-p-f128-10
#include <cstdint>
#include <string>

#include "engine/nn/sequential.h"

namespace nnr {

// The most parameters a spec may describe (2^27: 512 MiB of float32 weights, as much again in their
// gradients). A larger spec is refused before anything is allocated.
constexpr int64_t kMaxModelParameters = int64_t(1) << 27;

// Builds the model with seeded initialisation (He normal before a ReLU, Xavier uniform for the
// output layer, zero biases). Throws nnr::InvalidArgument naming the bad part of the spec, or
// saying the model would have more than max_parameters parameters (the fuzz target lowers it, so
// that it builds small models fast).
Sequential build_model(const std::string& spec, uint64_t seed, int64_t max_parameters = kMaxModelParameters);
// Shape of one input sample the spec expects ({D0} for mlp, {C, H, W} for cnn).
Shape model_input_shape(const std::string& spec);
// The grammar above, for --help.
const char* model_spec_help();

}  // namespace nnr
