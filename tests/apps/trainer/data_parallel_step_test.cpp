// The data-parallel step's parts that need neither a second process nor a GPU: the open gradient
// ranges a step packs (adjacent rows merged), the step with masks through the single-process
// collective (the pack and unpack must put every open entry back where it came from), the gradient
// buckets (their plan, their starts during backward, the same weights whatever their size), the host
// collectives' refusal of device buffers, and the NNR_COLLECTIVE and NNR_ALLREDUCE_BUCKET_BYTES
// switches.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <memory>
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

namespace {

// Sets (or, with null, unsets) NNR_ALLREDUCE_BUCKET_BYTES for one scope.
struct BucketBytes {
  explicit BucketBytes(const char* value) {
    if (value) setenv("NNR_ALLREDUCE_BUCKET_BYTES", value, 1);
    else unsetenv("NNR_ALLREDUCE_BUCKET_BYTES");
  }
  ~BucketBytes() { unsetenv("NNR_ALLREDUCE_BUCKET_BYTES"); }
};

// One rank that records the nonblocking sums: each start's count, and whether the model's first
// weight already had its gradient then (backward computes it last: a start before it overlaps the
// backward pass). Sums over one rank are the input, as for the single process.
class RecordingCollective final : public Collective {
 public:
  explicit RecordingCollective(const Parameter* first_weight) : first_weight_(first_weight) {}
  const char* name() const override { return "recording"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void all_reduce_sum(float* /*x*/, int64_t n) override {
    blocking_floats.push_back(n);
    bytes_ += n * 4;
  }
  void all_reduce_sum(double* /*x*/, int64_t n) override { bytes_ += n * 8; }
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
  void start_all_reduce_sum(float* /*x*/, int64_t n) override {
    started_floats.push_back(n);
    bool computed = false;
    for (int64_t i = 0; i < first_weight_->grad.numel(); ++i) computed = computed || first_weight_->grad.data()[i] != 0.0f;
    first_weight_done_at_start.push_back(computed);
    ++pending;
    bytes_ += n * 4;
  }
  void progress_all_reduce_sums() override { ++progress_calls; }
  void wait_all_reduce_sums() override {
    waits_with_pending.push_back(pending);
    pending = 0;
  }
  int64_t bytes_all_reduced() const override { return bytes_; }
  void finish() override {}

  std::vector<int64_t> started_floats, blocking_floats;
  std::vector<bool> first_weight_done_at_start;
  std::vector<int> waits_with_pending;
  int pending = 0, progress_calls = 0;

 private:
  const Parameter* first_weight_;
  int64_t bytes_ = 0;
};

std::vector<std::vector<std::pair<int64_t, int64_t>>> all_ranges(const std::vector<Parameter*>& params) {
  std::vector<std::vector<std::pair<int64_t, int64_t>>> ranges;
  for (const Parameter* p : params) ranges.push_back(open_gradient_ranges(*p));
  return ranges;
}

}  // namespace

// mlp:16-32-10: 0.weight (512 floats), 0.bias (32), 2.weight (320), 2.bias (10); backward finishes
// the last two first.
TEST_CASE("gradient buckets: backward order, whole parameters, closed at the byte size", "[data_parallel]") {
  Sequential model = build_model("mlp:16-32-10", 7);
  const std::vector<Parameter*> params = model.parameters();
  const auto ranges = all_ranges(params);
  using Params = std::vector<size_t>;
  SECTION("0 bytes: one bucket of everything") {
    const auto b = gradient_buckets(params, ranges, 0);
    REQUIRE(b.size() == 1);
    CHECK(b[0].params == Params{3, 2, 1, 0});
    CHECK(b[0].count == 874);
    CHECK(b[0].offset == 0);
  }
  SECTION("a boundary in the middle of the parameters: the output layer, then the hidden one") {
    const auto b = gradient_buckets(params, ranges, 330 * 4);  // 2.bias + 2.weight fill the first
    REQUIRE(b.size() == 2);
    CHECK(b[0].params == Params{3, 2});
    CHECK(b[0].count == 330);
    CHECK(b[1].params == Params{1, 0});
    CHECK(b[1].offset == 330);
    CHECK(b[1].count == 544);
  }
  SECTION("a boundary between a layer's bias and its weight") {
    const auto b = gradient_buckets(params, ranges, 362 * 4);  // 10 + 320 + 32 floats
    REQUIRE(b.size() == 2);
    CHECK(b[0].params == Params{3, 2, 1});
    CHECK(b[1].params == Params{0});
    CHECK(b[1].offset == 362);
  }
  SECTION("a size smaller than one parameter: each parameter its own bucket, none split") {
    const auto b = gradient_buckets(params, ranges, 8);
    REQUIRE(b.size() == 4);
    CHECK(b[0].params == Params{3});
    CHECK(b[1].params == Params{2});
    CHECK(b[2].params == Params{1});
    CHECK(b[3].params == Params{0});
    CHECK(b[0].count == 10);
    CHECK(b[3].offset == 362);
    CHECK(b[3].count == 512);
  }
  SECTION("only open entries count; a closed parameter is in no bucket") {
    params[3]->mask = UpdateMask::none();
    params[2]->mask = UpdateMask::of_rows({0, 1});  // 2 rows of 32
    const auto b = gradient_buckets(params, all_ranges(params), 64 * 4);
    REQUIRE(b.size() == 2);
    CHECK(b[0].params == Params{2});
    CHECK(b[0].count == 64);
    CHECK(b[1].params == Params{1, 0});
  }
}

TEST_CASE("bucketed steps start each bucket during backward and update as the single all-reduce does, bit for bit",
          "[data_parallel]") {
  const Dataset data = test::separable_dataset(64, 6);
  const Batch batch = first_rows(data, 48);
  // Every bucket size gives the weights of the plain step (one rank: the sums are the inputs, so
  // this checks that each bucket packs and unpacks its own entries).
  Sequential plain = build_model("mlp:16-32-10", 9);
  set_masks(plain);
  auto plain_optimizer = make_optimizer({"adam", 0.01f, 0.0f, 0.0f});
  for (int step = 0; step < 3; ++step) train_step(plain, *plain_optimizer, batch);
  const std::vector<Parameter*> expected = plain.parameters();
  struct Case {
    const char* bytes;
    std::vector<int64_t> starts;        // floats per nonblocking start, in order
    std::vector<bool> first_weight_done;  // whether 0.weight's gradient was computed at each start
  };
  // Open entries with set_masks: 0.weight 7 rows of 16 (112), 0.bias 32, 2.weight 108 of 320, 2.bias 10.
  const std::vector<Case> cases = {
      {"0", {}, {}},
      {"4", {10, 108, 32, 112}, {false, false, true, true}},
      {"472", {118, 144}, {false, true}},  // (10 + 108) * 4 bytes: the output layer, then the hidden one
      {nullptr, {262}, {true}},     // the default (256 KiB) holds this model whole: after backward
  };
  for (const Case& c : cases) {
    INFO("NNR_ALLREDUCE_BUCKET_BYTES=" << (c.bytes ? c.bytes : "(unset)"));
    BucketBytes env(c.bytes);
    Sequential model = build_model("mlp:16-32-10", 9);
    set_masks(model);
    auto optimizer = make_optimizer({"adam", 0.01f, 0.0f, 0.0f});
    RecordingCollective recording(model.parameters()[0]);
    StepScratch scratch;
    std::vector<float> flat;
    for (int step = 0; step < 3; ++step)
      train_step_data_parallel(model, *optimizer, batch, recording, scratch, flat);
    const std::vector<Parameter*> got = model.parameters();
    for (size_t k = 0; k < got.size(); ++k) {
      INFO(got[k]->name);
      CHECK(got[k]->value.to_vector() == expected[k]->value.to_vector());
    }
    if (std::string(c.bytes ? c.bytes : "") == "0") {
      // One blocking all-reduce of every open entry per step after backward, nothing nonblocking.
      CHECK(recording.started_floats.empty());
      CHECK(recording.blocking_floats == std::vector<int64_t>{262, 262, 262});
      continue;
    }
    CHECK(recording.blocking_floats.empty());
    // The buckets of the last step (each step starts the same ones).
    const size_t per_step = recording.started_floats.size() / 3;
    REQUIRE(per_step * 3 == recording.started_floats.size());
    const std::vector<int64_t> last(recording.started_floats.end() - static_cast<long>(per_step),
                                    recording.started_floats.end());
    CHECK(last == c.starts);
    // A bucket of the upper layer starts before backward has computed the first layer's gradient.
    const std::vector<bool> done(recording.first_weight_done_at_start.end() - static_cast<long>(per_step),
                                 recording.first_weight_done_at_start.end());
    CHECK(done == c.first_weight_done);
    CHECK(recording.progress_calls > 0);
    // One wait per step, covering every bucket started in it.
    CHECK(recording.waits_with_pending == std::vector<int>(3, static_cast<int>(per_step)));
  }
}

TEST_CASE("a bucketed step of an empty share starts the same buckets, with zeros", "[data_parallel]") {
  // Rank 1 of 2 with a global batch of 1: its share is empty, but it must make the other rank's
  // calls in the same order (the loss, then each bucket, then the wait).
  class EmptyShareRank final : public Collective {
   public:
    const char* name() const override { return "empty-share"; }
    int rank() const override { return 1; }
    int size() const override { return 2; }
    void all_reduce_sum(float*, int64_t) override { calls.push_back("sum"); }
    void all_reduce_sum(double* x, int64_t) override {
      calls.push_back("loss");
      x[0] = 0.5;  // rank 0's loss of its one sample
    }
    void broadcast(void*, size_t, int) override {}
    void barrier() override {}
    void start_all_reduce_sum(float* x, int64_t n) override {
      calls.push_back("start " + std::to_string(n));
      for (int64_t i = 0; i < n; ++i) all_zero = all_zero && x[i] == 0.0f;
    }
    void wait_all_reduce_sums() override { calls.push_back("wait"); }
    int64_t bytes_all_reduced() const override { return 0; }
    void finish() override {}
    std::vector<std::string> calls;
    bool all_zero = true;
  } rank1;
  BucketBytes env("4");
  const Dataset data = test::separable_dataset(8, 7);
  Sequential model = build_model("mlp:16-32-10", 9);
  auto optimizer = make_optimizer({"sgd", 0.1f, 0.0f, 0.0f});
  StepScratch scratch;
  std::vector<float> flat;
  CHECK(train_step_data_parallel(model, *optimizer, first_rows(data, 1), rank1, scratch, flat) == 0.5);
  CHECK(rank1.calls == std::vector<std::string>{"loss", "start 10", "start 320", "start 32", "start 512", "wait"});
  CHECK(rank1.all_zero);
}

TEST_CASE("NNR_ALLREDUCE_BUCKET_BYTES is a whole number of bytes, 256 KiB when unset", "[data_parallel]") {
  {
    BucketBytes env(nullptr);
    CHECK(all_reduce_bucket_bytes() == 256 * 1024);
    CHECK(all_reduce_bucket_bytes() == kDefaultAllReduceBucketBytes);
  }
  {
    BucketBytes env("0");
    CHECK(all_reduce_bucket_bytes() == 0);
  }
  {
    BucketBytes env("1048576");
    CHECK(all_reduce_bucket_bytes() == 1048576);
  }
  for (const char* bad : {"-1", "1k", "abc", "1.5"}) {
    BucketBytes env(bad);
    CHECK_THROWS_AS(all_reduce_bucket_bytes(), InvalidArgument);
  }
  BucketBytes env("x");
  CHECK_THROWS_WITH(all_reduce_bucket_bytes(), "[collective] NNR_ALLREDUCE_BUCKET_BYTES must be a whole number of "
                                               "bytes (0: one all-reduce after backward), not 'x'");
}
