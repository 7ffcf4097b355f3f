// The data-parallel step's parts that need neither a second process nor a GPU: the open gradient
// ranges a step packs (adjacent rows merged), the step with masks through the single-process
// collective (the pack and unpack must put every open entry back where it came from), the host
// collectives' refusal of device buffers, and the NNR_COLLECTIVE switch.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "apps/trainer/train_loop.h"
#include "engine/core/collective.h"
#include "engine/core/error.h"
#include "engine/nn/model_spec.h"
#include "engine/optim/optimizer.h"
#include "tests/apps/app_test_util.h"

using namespace nnr;
using Ranges = std::vector<std::pair<int64_t, int64_t>>;

namespace {

// A parameter of `rows` rows of `length` entries with the given mask.
Parameter parameter(int64_t rows, int64_t length, UpdateMask mask) {
  Parameter p;
  p.value = Tensor({rows, length});
  p.grad = Tensor({rows, length});
  p.mask = std::move(mask);
  return p;
}

// The first `n` rows of a data set as one batch.
Batch first_rows(const Dataset& data, int64_t n) {
  Batch b;
  const int64_t row = data.features.numel() / data.size();
  Shape shape = data.features.shape();
  shape[0] = n;
  b.x = Tensor::empty(shape);
  std::copy(data.features.data(), data.features.data() + n * row, b.x.data());
  b.y.assign(data.labels.begin(), data.labels.begin() + n);
  for (int64_t i = 0; i < n; ++i) b.indices.push_back(i);
  return b;
}

// A row mask on the first weight, an element mask on the second, the rest open.
void set_masks(Sequential& model) {
  const std::vector<Parameter*> params = model.parameters();
  REQUIRE(params.size() == 4);
  params[0]->mask = UpdateMask::of_rows({1, 2, 3, 7, 20, 21, 31});
  std::vector<uint8_t> flags(static_cast<size_t>(params[2]->value.numel()), 0);
  for (size_t i = 0; i < flags.size(); i += 3) flags[i] = 1;
  flags[1] = 1;  // 0 and 1 adjacent: one range
  params[2]->mask = UpdateMask::of_elements(flags);
}

}  // namespace

TEST_CASE("open_gradient_ranges: every entry of an open parameter is one range", "[data_parallel]") {
  const Parameter p = parameter(4, 5, UpdateMask::all());
  CHECK(open_gradient_ranges(p) == Ranges{{0, 20}});
}

TEST_CASE("open_gradient_ranges: a row mask's adjacent rows merge into one range", "[data_parallel]") {
  const Parameter p = parameter(10, 3, UpdateMask::of_rows({0, 1, 3, 4, 5, 9}));
  CHECK(open_gradient_ranges(p) == Ranges{{0, 6}, {9, 18}, {27, 30}});
  CHECK(open_gradient_ranges(parameter(10, 3, UpdateMask::none())).empty());
}

TEST_CASE("open_gradient_ranges: an element mask's runs of open entries are ranges", "[data_parallel]") {
  const std::vector<uint8_t> flags{1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 0, 1};
  const Parameter p = parameter(3, 4, UpdateMask::of_elements(flags));
  CHECK(open_gradient_ranges(p) == Ranges{{0, 2}, {4, 5}, {6, 9}, {11, 12}});
}

TEST_CASE("a data-parallel step with masks on one rank is the plain step, and sends only the open entries",
          "[data_parallel]") {
  const Dataset data = test::separable_dataset(64, 5);
  const Batch batch = first_rows(data, 48);
  Sequential plain = build_model("mlp:16-32-10", 7), parallel = build_model("mlp:16-32-10", 7);
  set_masks(plain);
  set_masks(parallel);
  auto plain_optimizer = make_optimizer({"adam", 0.01f, 0.0f, 0.0f});
  auto parallel_optimizer = make_optimizer({"adam", 0.01f, 0.0f, 0.0f});
  Collective& single = collective();
  REQUIRE(std::string(single.name()) == "single");
  int64_t open = 0;
  for (Parameter* p : parallel.parameters())
    for (const auto& [b, e] : open_gradient_ranges(*p)) open += e - b;
  StepScratch scratch;
  std::vector<float> flat;
  for (int step = 0; step < 3; ++step) {
    const int64_t before = single.bytes_all_reduced();
    const double a = train_step(plain, *plain_optimizer, batch);
    const double b = train_step_data_parallel(parallel, *parallel_optimizer, batch, single, scratch, flat);
    CHECK(b == Approx(a).epsilon(1e-12));
    // The open entries as floats and the loss as one double.
    CHECK(single.bytes_all_reduced() - before == open * 4 + 8);
    CHECK(static_cast<int64_t>(flat.size()) == open);
  }
  const std::vector<Parameter*> p = plain.parameters(), q = parallel.parameters();
  for (size_t k = 0; k < p.size(); ++k) {
    INFO(p[k]->name);
    // The same gradients reach the same optimizer: bitwise the same weights.
    CHECK(p[k]->value.to_vector() == q[k]->value.to_vector());
  }
  // Closed entries' gradients are zero after the step (every rank holds the same values).
  const Tensor& g = q[0]->grad;
  for (int64_t i = 0; i < 16; ++i) CHECK(g.data()[i] == 0.0f);  // row 0 (16 inputs) is closed
}

TEST_CASE("host collectives refuse device buffers, and say what a CUDA run uses", "[data_parallel]") {
  Collective& single = collective();
  CHECK(single.cuda_device() == -1);
  CHECK_FALSE(runs_data_parallel(&single));
  CHECK_FALSE(runs_data_parallel(nullptr));
  float x = 1.0f;
  CHECK_THROWS_WITH(single.all_reduce_sum_device(&x, 1, 1.0f, nullptr),
                    "[collective] the single collective sums host buffers only (a CUDA run uses cuda_collective())");
  CHECK_THROWS_AS(single.broadcast_device(&x, 4, 0, nullptr), Error);
}

TEST_CASE("NNR_COLLECTIVE is unset or nccl", "[data_parallel]") {
  unsetenv("NNR_COLLECTIVE");
  CHECK_FALSE(nccl_collective_forced());
  setenv("NNR_COLLECTIVE", "", 1);
  CHECK_FALSE(nccl_collective_forced());
  setenv("NNR_COLLECTIVE", "nccl", 1);
  CHECK(nccl_collective_forced());
  setenv("NNR_COLLECTIVE", "mpi", 1);
  CHECK_THROWS_WITH(nccl_collective_forced(),
                    "[collective] NNR_COLLECTIVE must be 'nccl' (the NCCL backend even for one process) or unset, not 'mpi'");
  CHECK_THROWS_AS(nccl_collective_forced(), InvalidArgument);
  unsetenv("NNR_COLLECTIVE");
}
