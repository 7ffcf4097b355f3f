// Whole training loops on CUDA tensors: a Linear/ReLU MLP trained on the GPU follows the same MLP
// trained on the CPU from the same seed, and a warm loop makes no cudaMalloc.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/engine/cuda/cuda_test_util.h"
#include "engine/core/context.h"
#include "engine/core/rng.h"
#include "engine/core/tensor.h"
#include "engine/nn/linear.h"
#include "engine/nn/loss.h"
#include "engine/nn/model_spec.h"
#include "engine/nn/sequential.h"
#include "engine/nn/shape_layers.h"
#include "engine/nn/tape.h"
#include "engine/optim/optimizer.h"
#include "kernels/cuda/device_memory.h"

using namespace nnr;
using nnr::test::relative_frobenius;

namespace {

constexpr int kSteps = 20;
constexpr int64_t kBatch = 64, kInputs = 12, kHidden = 32, kClasses = 5;

// Why 1e-4: CPU (Eigen) and GPU (cuBLAS, no TF32) compute every GEMM in fp32 with different
// summation orders, so each step's gradients differ by ~1e-7 relative. On the CPU, perturbing this
// run's initial weights by 1e-7 relative moved the parameters after 20 steps by 1e-7..3e-7 and the
// loss by 8e-8 (no chaotic growth), so 20 steps of fresh 1e-7 differences stay near 2e-6: 1e-4
// leaves a margin of ~50x. Any real dispatch bug (a wrong transpose, a lost
// bias, a missed accumulate, a mask or penalty dropped) moves parameters by O(lr·g) ≈ 1e-2 or more.
// A ReLU whose input lands within an ulp of zero can take the other branch on one device; for one
// sample out of 64 that shifts a gradient row by well under 1e-4 of the parameter's norm.
constexpr double kParamRelFrobenius = 1e-4;
constexpr double kLossRel = 1e-4;

std::unique_ptr<Sequential> make_mlp(uint64_t seed) {
  Rng rng(seed);
  auto model = std::make_unique<Sequential>("mlp");
  model->add(std::make_unique<Linear>(kInputs, kHidden, /*he_init=*/true, rng));
  model->add(std::make_unique<ReLU>());
  model->add(std::make_unique<Linear>(kHidden, kClasses, /*he_init=*/false, rng));
  return model;
}

// A learnable task: the label is the argmax of a fixed random linear map of the input.
struct Batch {
  Tensor x;
  std::vector<int32_t> labels;
};
Batch make_batch(uint64_t seed, Shape shape = {kBatch, kInputs}, int64_t classes = kClasses) {
  Rng rng(seed);
  const int64_t batch = shape[0];
  Batch b{Tensor(std::move(shape)), std::vector<int32_t>(static_cast<size_t>(batch))};
  const int64_t features = b.x.numel() / batch;
  std::vector<double> map(static_cast<size_t>(features * classes));
  for (auto& w : map) w = rng.normal();
  for (int64_t i = 0; i < b.x.numel(); ++i) b.x[i] = static_cast<float>(rng.normal());
  for (int64_t n = 0; n < batch; ++n) {
    int32_t best = 0;
    double best_score = -1e300;
    for (int64_t c = 0; c < classes; ++c) {
      double s = 0.0;
      for (int64_t j = 0; j < features; ++j)
        s += b.x[n * features + j] * map[static_cast<size_t>(j * classes + c)];
      if (s > best_score) best_score = s, best = static_cast<int32_t>(c);
    }
    b.labels[static_cast<size_t>(n)] = best;
  }
  return b;
}

// Importance penalty on every parameter: θ* = initial θ, Ω = 0.5 everywhere (so the fused
// penalised update and the penalty value run on both devices too).
void anchor_at_start(Sequential& model) {
  for (Parameter* p : model.parameters()) {
    p->anchor = p->value.clone();
    p->omega = Tensor(p->value.shape());
    p->omega.fill(0.5f);
  }
}

struct StepResult {
  double loss, penalty;
};
StepResult train_step(Sequential& model, Tape& tape, SoftmaxCrossEntropy& xent, Optimizer& opt, const Tensor& x,
                      const std::vector<int32_t>& labels) {
  model.zero_grad();
  model.forward(x, tape);
  const double loss = tape.apply_loss(xent, labels);
  tape.backward();
  const double penalty = opt.step(model.parameters(), /*want_penalty=*/true);
  return {loss, penalty};
}

void require_same_parameters(Sequential& cpu_model, Sequential& gpu_model) {
  std::vector<Parameter*> cpu_params = cpu_model.parameters(), gpu_params = gpu_model.parameters();
  REQUIRE(cpu_params.size() == gpu_params.size());
  for (size_t i = 0; i < cpu_params.size(); ++i) {
    const double diff = relative_frobenius(gpu_params[i]->value.to_cpu(), cpu_params[i]->value);
    INFO(cpu_params[i]->name << ": relative Frobenius difference " << diff);
    REQUIRE(diff <= kParamRelFrobenius);
  }
}


// Trains `cpu_model` on the CPU and `gpu_model` (the same weights, masks and anchors) on CUDA for
// kSteps SGD-momentum steps with the importance penalty on, comparing loss and penalty at every
// step; returns the CPU's first and last loss.
std::pair<double, double> train_side_by_side(Sequential& cpu_model, Sequential& gpu_model, const Batch& batch,
                                             Context& ctx, float lr) {
  gpu_model.to(Device::CUDA, ctx);
  const Tensor x_gpu = batch.x.to(Device::CUDA, ctx);
  SgdConfig config;
  config.lr = lr;
  config.momentum = 0.9f;
  Sgd cpu_opt(config), gpu_opt(config);
  cpu_opt.set_penalty_strength(0.1f);
  gpu_opt.set_penalty_strength(0.1f);
  Tape cpu_tape, gpu_tape;
  SoftmaxCrossEntropy cpu_xent, gpu_xent;

  double first_loss = 0.0, last_loss = 0.0;
  for (int step = 1; step <= kSteps; ++step) {
    const StepResult want = train_step(cpu_model, cpu_tape, cpu_xent, cpu_opt, batch.x, batch.labels);
    const StepResult got = train_step(gpu_model, gpu_tape, gpu_xent, gpu_opt, x_gpu, batch.labels);
    INFO("step " << step << ": cpu loss " << want.loss << " gpu loss " << got.loss << ", cpu penalty "
                 << want.penalty << " gpu penalty " << got.penalty);
    REQUIRE(std::fabs(got.loss - want.loss) <= kLossRel * std::fabs(want.loss));
    // The penalty is exactly 0 at step 1 (θ = θ*) on both devices, then grows to ~0.5 by step 20.
    REQUIRE(std::fabs(got.penalty - want.penalty) <= kLossRel * std::fabs(want.penalty) + 1e-12);
    if (step == 1) first_loss = want.loss;
    last_loss = want.loss;
  }
  return {first_loss, last_loss};
}

}  // namespace

TEST_CASE("an MLP trained 20 SGD steps on cuda matches the same MLP trained on the cpu", "[cuda][train]") {
  Context ctx;
  const Batch batch = make_batch(11);
  auto cpu_model = make_mlp(7);
  auto gpu_model = make_mlp(7);
  anchor_at_start(*cpu_model);
  anchor_at_start(*gpu_model);
  const auto [first_loss, last_loss] = train_side_by_side(*cpu_model, *gpu_model, batch, ctx, 0.05f);
  REQUIRE(last_loss < 0.8 * first_loss);  // the comparison is of a run that actually learns
  require_same_parameters(*cpu_model, *gpu_model);
}

// Conv (cuDNN), bias over channels, max-pool, flatten and Linear, with odd channel counts and an
// image size that pooling does not divide. The tolerances are the MLP's: a max whose two
// candidates differ by less than the devices' rounding can route one sample's gradient to the
// neighbouring pixel, which moves a weight by a small fraction of one sample's share of dW.
TEST_CASE("a CNN trained 20 SGD steps on cuda matches the same CNN trained on the cpu", "[cuda][train][conv]") {
  Context ctx;
  const std::string spec = "cnn:3x9x9-c5-p-c7-p-f11-4";
  const Batch batch = make_batch(13, {33, 3, 9, 9}, 4);
  Sequential cpu_model = build_model(spec, 5), gpu_model = build_model(spec, 5);
  anchor_at_start(cpu_model);
  anchor_at_start(gpu_model);
  const auto [first_loss, last_loss] = train_side_by_side(cpu_model, gpu_model, batch, ctx, 0.02f);
  REQUIRE(last_loss < 0.8 * first_loss);
  require_same_parameters(cpu_model, gpu_model);
}

// The bandit's weight selection on the device: Rows masks (row-selective Linear and Conv
// gradients: gather, compact GEMM or cuDNN call, scatter), an Elements mask, and a frozen bias.
// Besides agreeing with the CPU, every masked-out entry on the GPU keeps its initial bits.
TEST_CASE("masked training on cuda matches the cpu and leaves masked-out weights bit-identical",
          "[cuda][train][mask]") {
  Context ctx;
  const std::string spec = "cnn:2x8x7-c6-p-f13-5";
  const Batch batch = make_batch(17, {31, 2, 8, 7}, 5);
  Sequential cpu_model = build_model(spec, 9), gpu_model = build_model(spec, 9);
  auto select = [](Sequential& model) {
    model.find_parameter("0.weight")->mask = UpdateMask::of_rows({1, 4, 5});  // conv filters
    model.find_parameter("0.bias")->mask = UpdateMask::of_rows({0, 4});
    model.find_parameter("4.weight")->mask = UpdateMask::of_rows({0, 3, 7, 12});  // output neurons
    model.find_parameter("4.bias")->mask = UpdateMask::none();
    Parameter* last = model.find_parameter("6.weight");
    std::vector<uint8_t> flags(static_cast<size_t>(last->value.numel()));
    for (size_t i = 0; i < flags.size(); ++i) flags[i] = (i * 7) % 10 < 3;  // 30 % of the entries
    last->mask = UpdateMask::of_elements(flags);
  };
  select(cpu_model);
  select(gpu_model);
  anchor_at_start(cpu_model);
  anchor_at_start(gpu_model);
  std::vector<Tensor> initial;
  for (Parameter* p : gpu_model.parameters()) initial.push_back(p->value.clone());

  const auto [first_loss, last_loss] = train_side_by_side(cpu_model, gpu_model, batch, ctx, 0.05f);
  REQUIRE(last_loss < first_loss);
  require_same_parameters(cpu_model, gpu_model);

  std::vector<Parameter*> params = gpu_model.parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    const Parameter& p = *params[i];
    const Tensor now = p.value.to_cpu();
    const int64_t row_length = p.row_length();
    int64_t changed = 0;
    for (int64_t j = 0; j < now.numel(); ++j) {
      const float a = now[j], b = initial[i][j];
      const bool same = std::memcmp(&a, &b, sizeof(float)) == 0;
      if (!p.mask.selects_element(j, row_length)) {
        INFO(p.name << "[" << j << "] is masked out");
        REQUIRE(same);
      }
      changed += !same;
    }
    INFO(p.name);
    REQUIRE((p.mask.selects_none() ? changed == 0 : changed > 0));
  }
}

// Selective backward on the device: with a few filters of the first conv open (and the head), the
// second conv computes its input gradient for those channels alone (gathered weight slices, one
// cuDNN backward-data call on them, the compact result scattered into a zeroed dx), and the
// Linear above it for the features of those channels alone (gathered columns, GEMM, scatter).
TEST_CASE("selective backward on cuda (input gradients in the read channels only) matches the cpu",
          "[cuda][train][mask]") {
  Context ctx;
  const std::string spec = "cnn:3x9x9-c5-p-c7-p-f11-4";
  const Batch batch = make_batch(19, {29, 3, 9, 9}, 4);
  Sequential cpu_model = build_model(spec, 6), gpu_model = build_model(spec, 6);
  auto select = [](Sequential& model) {
    for (Parameter* p : model.parameters()) p->mask = UpdateMask::none();
    model.find_parameter("0.weight")->mask = UpdateMask::of_rows({1, 3});
    model.find_parameter("0.bias")->mask = UpdateMask::of_rows({1, 3});
    model.find_parameter("7.weight")->mask = UpdateMask::of_rows({2, 3, 4, 9});
    model.find_parameter("9.weight")->mask = UpdateMask::all();
    model.find_parameter("9.bias")->mask = UpdateMask::all();
  };
  select(cpu_model);
  select(gpu_model);
  anchor_at_start(cpu_model);
  anchor_at_start(gpu_model);
  std::vector<Tensor> initial;
  for (Parameter* p : gpu_model.parameters()) initial.push_back(p->value.clone());

  const auto [first_loss, last_loss] = train_side_by_side(cpu_model, gpu_model, batch, ctx, 0.05f);
  REQUIRE(last_loss < first_loss);
  require_same_parameters(cpu_model, gpu_model);
  // The second conv's input gradient was computed for 2 of its 5 input channels.
  REQUIRE(gpu_model.layer(3).compute_counts().input_grad_flops ==
          cpu_model.layer(3).compute_counts().input_grad_flops);
  REQUIRE(cpu_model.layer(3).compute_counts().input_grad_flops == kSteps * 2 * 29 * 7 * 4 * 4 * 2 * 9);

  std::vector<Parameter*> params = gpu_model.parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    const Parameter& p = *params[i];
    const Tensor now = p.value.to_cpu();
    for (int64_t j = 0; j < now.numel(); ++j)
      if (!p.mask.selects_element(j, p.row_length())) {
        const float a = now[j], b = initial[i][j];
        INFO(p.name << "[" << j << "] is masked out");
        REQUIRE(std::memcmp(&a, &b, sizeof(float)) == 0);
      }
  }
}

TEST_CASE("a warm cuda training loop makes no cudaMalloc or cudaFree", "[cuda][train][memory]") {
  Context ctx;
  const Batch batch = make_batch(12);
  auto model = make_mlp(8);
  model->to(Device::CUDA, ctx);
  const Tensor x = batch.x.to(Device::CUDA, ctx);
  AdamConfig config;
  config.lr = 1e-2f;
  Adam opt(config);
  Tape tape;
  SoftmaxCrossEntropy xent;

  // Warm-up is two steps, not one: step 1 creates the optimizer state at its very end, so step 2 is
  // the first whose working set (activations, gradients, labels, loss) coexists with that state
  // and may need one more block of a size the state shares. From then on every step asks the
  // cache for exactly the sizes the previous step returned.
  double first_loss = train_step(*model, tape, xent, opt, x, batch.labels).loss;
  const kernels::CachingAllocator::Stats after_step1 = ctx.allocator().stats();
  train_step(*model, tape, xent, opt, x, batch.labels);
  const kernels::CachingAllocator::Stats warm = ctx.allocator().stats();
  double last_loss = 0.0;
  for (int step = 3; step <= kSteps; ++step) last_loss = train_step(*model, tape, xent, opt, x, batch.labels).loss;
  const kernels::CachingAllocator::Stats end = ctx.allocator().stats();

  INFO("cudaMalloc calls: after step 1 " << after_step1.malloc_calls << ", after step 2 " << warm.malloc_calls
                                         << ", after step " << kSteps << " " << end.malloc_calls);
  REQUIRE(warm.malloc_calls > 0);  // the counters do count this loop's memory
  REQUIRE(end.malloc_calls == warm.malloc_calls);
  REQUIRE(end.free_calls == warm.free_calls);
  REQUIRE(end.cache_hits > warm.cache_hits);
  REQUIRE(last_loss < first_loss);
}
