// The FLOP counters of the layers (engine/nn/compute_counts.h): hand-computed counts of one
// training step (forward + loss + backward on a Tape) at several weight selections, inference,
// reset and accumulation. The arithmetic follows the convention written in compute_counts.h.
#include <catch2/catch.hpp>

#include "engine/core/rng.h"
#include "engine/nn/compute_counts.h"
#include "engine/nn/linear.h"
#include "engine/nn/model_spec.h"
#include "tests/engine/nn/gradient_check.h"

using namespace nnr;
using nnr::test::random_tensor;

namespace {

using Batch = nnr::test::LabelledBatch;
using nnr::test::random_batch;

// One training step's gradients: forward on a fresh tape, loss, backward.
void train_step(Sequential& model, const Batch& b) { nnr::test::backprop(model, b); }

ComputeCounts counts(int64_t forward, int64_t input_grad, int64_t weight_grad) {
  ComputeCounts c;
  c.forward_flops = forward;
  c.input_grad_flops = input_grad;
  c.weight_grad_flops = weight_grad;
  return c;
}

void freeze_all(Sequential& model) {
  for (Parameter* p : model.parameters()) p->mask = UpdateMask::none();
}

void open_layer(Sequential& model, size_t i) {
  for (Parameter* p : model.layer(i).parameters()) p->mask = UpdateMask::all();
}

void open_rows(Sequential& model, size_t i, std::vector<int64_t> rows) {
  for (Parameter* p : model.layer(i).parameters()) p->mask = UpdateMask::of_rows(rows);
}

// mlp:6-5-4-3 = 0 Linear(6,5), 1 ReLU, 2 Linear(5,4), 3 ReLU, 4 Linear(4,3); batch N = 7.
//   forward  L0  2·7·5·6 + 7·5 = 420 + 35 = 455
//            R1  7·5                    =  35
//            L2  2·7·4·5 + 7·4 = 280 + 28 = 308
//            R3  7·4                    =  28
//            L4  2·7·3·4 + 7·3 = 168 + 21 = 189
//            sum                        = 1015
// Per Linear(in, out): dW GEMM 2·N·out·in (== its forward GEMM), db N·out, dx 2·N·out·in.
constexpr int64_t kMlpForward = 1015;
const char* const kMlp = "mlp:6-5-4-3";

// cnn:1x8x8-c3-p-f5-4 = 0 Conv2d(1,3,k3,pad 1), 1 ReLU, 2 MaxPool2d(2), 3 Flatten,
// 4 Linear(48,5), 5 ReLU, 6 Linear(5,4); batch N = 2.
//   conv output [2,3,8,8]: 384 elements, C·K·K = 9 multiply-adds each; N·Ho·Wo = 128
//   pool output [2,3,4,4]: 96 elements, 48 features per sample
//   forward  C0  2·384·9 + 384 = 6912 + 384 = 7296
//            R1  384                         =  384
//            P2  96·2·2                      =  384
//            F3  0
//            L4  2·2·5·48 + 2·5 = 960 + 10   =  970
//            R5  2·5                         =   10
//            L6  2·2·4·5 + 2·4 = 80 + 8      =   88
//            sum                             = 9132
constexpr int64_t kCnnForward = 9132;
const char* const kCnn = "cnn:1x8x8-c3-p-f5-4";

}  // namespace

TEST_CASE("ComputeCounts adds, subtracts and totals", "[compute_counts]") {
  const ComputeCounts a = counts(10, 20, 30), b = counts(1, 2, 3);
  CHECK(a.total() == 60);
  CHECK(a.backward() == 50);
  ComputeCounts c = a;
  c += b;
  CHECK(c == counts(11, 22, 33));
  CHECK(a + b == c);
  CHECK(c - a == b);
  CHECK(ComputeCounts().total() == 0);
}

TEST_CASE("MLP step, every weight open: full forward, dx above the first layer, every weight gradient",
          "[compute_counts][mlp]") {
  Sequential model = build_model(kMlp, 1);
  const Batch b = random_batch({7, 6}, 3, 2);
  CHECK(model.compute_counts() == ComputeCounts());
  train_step(model, b);
  // weight_grad: L4 168 + 21, L2 280 + 28, L0 420 + 35           = 189 + 308 + 455 = 952
  // input_grad:  L4 168, R3 28, L2 280, R1 35, L0 none (the batch) = 511
  CHECK(model.compute_counts() == counts(kMlpForward, 511, 952));
  // Per layer.
  CHECK(model.layer(0).compute_counts() == counts(455, 0, 455));
  CHECK(model.layer(1).compute_counts() == counts(35, 35, 0));
  CHECK(model.layer(2).compute_counts() == counts(308, 280, 308));
  CHECK(model.layer(3).compute_counts() == counts(28, 28, 0));
  CHECK(model.layer(4).compute_counts() == counts(189, 168, 189));
  CHECK(model.compute_counts().total() == 1015 + 511 + 952);
}

TEST_CASE("MLP step, only the last layer open: no dx and no weight gradient below it", "[compute_counts][mlp]") {
  Sequential model = build_model(kMlp, 1);
  const Batch b = random_batch({7, 6}, 3, 2);
  freeze_all(model);
  open_layer(model, 4);
  train_step(model, b);
  // L4 only: dW 168 + db 21 = 189; its input needs no gradient, the tape stops there.
  CHECK(model.compute_counts() == counts(kMlpForward, 0, 189));
  CHECK(model.layer(4).compute_counts() == counts(189, 0, 189));
  for (size_t i = 0; i < 4; ++i) CHECK(model.layer(i).compute_counts().backward() == 0);
}

TEST_CASE("MLP step, some rows of the middle layer open: weight gradient of those rows, dx above them",
          "[compute_counts][mlp]") {
  const Batch b = random_batch({7, 6}, 3, 2);
  SECTION("rows {1, 3} of Linear(5, 4), everything else frozen") {
    Sequential model = build_model(kMlp, 1);
    freeze_all(model);
    open_rows(model, 2, {1, 3});
    train_step(model, b);
    // L4 frozen: no weight gradient, but dx of the 2 features L2's open rows read,
    // 2·7·3·2 = 84 (L2 below needs those alone); R3 28 (the whole tensor).
    // L2: dW of 2 open rows 2·7·2·5 = 140, db of 2 rows 7·2 = 14; no dx (lowest open layer).
    CHECK(model.layer(4).compute_counts() == counts(189, 84, 0));
    CHECK(model.layer(3).compute_counts() == counts(28, 28, 0));
    CHECK(model.layer(2).compute_counts() == counts(308, 0, 154));
    CHECK(model.layer(1).compute_counts() == counts(35, 0, 0));
    CHECK(model.layer(0).compute_counts() == counts(455, 0, 0));
    CHECK(model.compute_counts() == counts(kMlpForward, 84 + 28, 140 + 14));
  }
  SECTION("the same rows and the last layer open") {
    Sequential model = build_model(kMlp, 1);
    freeze_all(model);
    open_rows(model, 2, {1, 3});
    open_layer(model, 4);
    train_step(model, b);
    // L4 189 + L2 154 weight gradient; dx as above.
    CHECK(model.compute_counts() == counts(kMlpForward, 112, 343));
  }
  SECTION("one row open, the weight gradient scales with it") {
    Sequential model = build_model(kMlp, 1);
    freeze_all(model);
    open_rows(model, 2, {0});
    train_step(model, b);
    // L2: 2·7·1·5 + 7·1 = 77; dx of L4 for one feature 2·7·3·1 = 42, R3 28.
    CHECK(model.compute_counts() == counts(kMlpForward, 42 + 28, 77));
  }
  SECTION("an Elements mask runs the full weight-gradient GEMM") {
    Sequential model = build_model(kMlp, 1);
    freeze_all(model);
    std::vector<uint8_t> flags(20, 0);
    flags[3] = flags[17] = 1;
    Linear& middle = dynamic_cast<Linear&>(model.layer(2));
    middle.weight().mask = UpdateMask::of_elements(flags);  // bias stays frozen
    train_step(model, b);
    // L2: dW 2·7·4·5 = 280 (every row computed), db 0 (frozen bias); every feature of L4's dx
    // (an element mask reads every row of dy) 168, R3 28.
    CHECK(model.compute_counts() == counts(kMlpForward, 196, 280));
  }
}

TEST_CASE("MLP step, everything frozen: forward only", "[compute_counts][mlp]") {
  Sequential model = build_model(kMlp, 1);
  const Batch b = random_batch({7, 6}, 3, 2);
  freeze_all(model);
  train_step(model, b);
  CHECK(model.compute_counts() == counts(kMlpForward, 0, 0));
}

TEST_CASE("inference counts the forward only", "[compute_counts][mlp][cnn]") {
  Sequential mlp = build_model(kMlp, 1);
  mlp.forward(random_batch({7, 6}, 3, 2).x);
  CHECK(mlp.compute_counts() == counts(kMlpForward, 0, 0));
  Sequential cnn = build_model(kCnn, 1);
  cnn.forward(random_batch({2, 1, 8, 8}, 4, 3).x);
  CHECK(cnn.compute_counts() == counts(kCnnForward, 0, 0));
}

TEST_CASE("counts accumulate over steps, reset clears them, and snapshots subtract", "[compute_counts][mlp]") {
  Sequential model = build_model(kMlp, 1);
  const Batch b = random_batch({7, 6}, 3, 2);
  train_step(model, b);
  const ComputeCounts one = model.compute_counts();
  CHECK(one == counts(kMlpForward, 511, 952));
  train_step(model, b);
  CHECK(model.compute_counts() == counts(2 * kMlpForward, 2 * 511, 2 * 952));
  CHECK(model.compute_counts() - one == one);
  model.reset_compute_counts();
  CHECK(model.compute_counts() == ComputeCounts());
  for (size_t i = 0; i < model.size(); ++i) CHECK(model.layer(i).compute_counts() == ComputeCounts());
  // A half-frozen step after the reset counts only itself.
  freeze_all(model);
  open_layer(model, 4);
  train_step(model, b);
  CHECK(model.compute_counts() == counts(kMlpForward, 0, 189));
}

TEST_CASE("dropout counts its multiply in training only", "[compute_counts][mlp]") {
  // mlp:6-5-4-3:dropout=0.5 = Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear.
  Sequential model = build_model("mlp:6-5-4-3:dropout=0.5", 1);
  const Batch b = random_batch({7, 6}, 3, 2);
  train_step(model, b);
  // Dropout after R1: 35 forward + 35 dx; after R3: 28 + 28.
  CHECK(model.compute_counts() == counts(kMlpForward + 63, 511 + 63, 952));
  model.reset_compute_counts();
  model.forward(b.x);  // inference: dropout is a copy
  CHECK(model.compute_counts() == counts(kMlpForward, 0, 0));
}

TEST_CASE("CNN step at several selections", "[compute_counts][cnn]") {
  const Batch b = random_batch({2, 1, 8, 8}, 4, 3);
  SECTION("every weight open") {
    Sequential model = build_model(kCnn, 1);
    train_step(model, b);
    // weight_grad: L6 80 + 8, L4 960 + 10, C0 2·128·3·9 + 128·3 = 6912 + 384 = 7296 -> 8354
    // input_grad:  L6 80, R5 10, L4 960, F3 0, P2 96, R1 96 (its backward runs in P2's pass: one
    //              compare per pooled value), C0 none (the batch)                    -> 1242
    CHECK(model.compute_counts() == counts(kCnnForward, 1242, 8354));
    CHECK(model.layer(0).compute_counts() == counts(7296, 0, 7296));
    CHECK(model.layer(1).compute_counts() == counts(384, 96, 0));
    CHECK(model.layer(2).compute_counts() == counts(384, 96, 0));
    CHECK(model.layer(3).compute_counts() == ComputeCounts());
    CHECK(model.layer(4).compute_counts() == counts(970, 960, 970));
  }
  SECTION("only the last layer open") {
    Sequential model = build_model(kCnn, 1);
    freeze_all(model);
    open_layer(model, 6);
    train_step(model, b);
    // L6: dW 80 + db 8, no dx.
    CHECK(model.compute_counts() == counts(kCnnForward, 0, 88));
  }
  SECTION("rows {0, 3, 4} of the hidden Linear(48, 5) and the last layer open") {
    Sequential model = build_model(kCnn, 1);
    freeze_all(model);
    open_rows(model, 4, {0, 3, 4});
    open_layer(model, 6);
    train_step(model, b);
    // L6 88 weight + dx of the 3 features L4's open rows read 2·2·4·3 = 48; R5 10 dx;
    // L4 dW 2·2·3·48 = 576 + db 2·3 = 6, no dx.
    CHECK(model.layer(6).compute_counts() == counts(88, 48, 88));
    CHECK(model.layer(4).compute_counts() == counts(970, 0, 582));
    CHECK(model.compute_counts() == counts(kCnnForward, 58, 670));
  }
  SECTION("one filter of the conv open, everything else frozen: dx all the way down to it") {
    Sequential model = build_model(kCnn, 1);
    freeze_all(model);
    open_rows(model, 0, {2});
    train_step(model, b);
    // C0: dW of 1 filter 2·128·1·9 = 2304 + db 128·1 = 128 -> 2432. Above it only channel 2 is
    // read: through R1, P2 and F3 that is features [32, 48) of L4's input, so L4's dx is
    // 2·2·5·16 = 320 (not 960); L6 80, R5 10, P2 96 and R1 96 as when all open -> 602.
    CHECK(model.layer(0).compute_counts() == counts(7296, 0, 2432));
    CHECK(model.layer(4).compute_counts() == counts(970, 320, 0));
    CHECK(model.compute_counts() == counts(kCnnForward, 602, 2432));
  }
  SECTION("everything frozen") {
    Sequential model = build_model(kCnn, 1);
    freeze_all(model);
    train_step(model, b);
    CHECK(model.compute_counts() == counts(kCnnForward, 0, 0));
  }
}
