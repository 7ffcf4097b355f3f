// Data-parallel CUDA runs on the NCCL backend (libnnr_nccl.so, issue #18), one GPU per rank.
// "[one_gpu]": NNR_COLLECTIVE=nccl and cuda_collective() run the whole NCCL path (pack on the
// device, NCCL all-reduce of one rank, unpack) on a single GPU, against the plain single-GPU run and
// against the CPU step. "[two_gpus]": mpirun -np 2 nnr train / stream --device cuda against one GPU
// with the same global batch, and a rank that hangs inside NCCL's wait ending the run (the
// timeout). The entry point (data_parallel_cuda_main.cpp) skips (exit 77) without a usable GPU or
// with fewer than the entry's --gpus; tests/apps/CMakeLists.txt registers one ctest entry per tag.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/trainer/train_loop.h"
#include "engine/core/collective.h"
#include "engine/core/context.h"
#include "engine/io/checkpoint.h"
#include "engine/nn/model_spec.h"
#include "engine/optim/optimizer.h"
#include "tests/apps/app_test_util.h"

namespace {

using namespace nnr::test;

// The largest |a - b| over every tensor of two checkpoints of the same model.
double max_difference(const std::string& a_path, const std::string& b_path) {
  const nnr::Checkpoint a = nnr::load_checkpoint(a_path), b = nnr::load_checkpoint(b_path);
  REQUIRE(a.tensors.size() == b.tensors.size());
  double worst = 0.0;
  for (const nnr::NamedTensor& t : a.tensors) {
    const nnr::Tensor* other = b.find(t.name);
    REQUIRE(other != nullptr);
    REQUIRE(other->numel() == t.value.numel());
    for (int64_t i = 0; i < t.value.numel(); ++i)
      worst = std::max(worst, std::fabs(static_cast<double>(t.value.data()[i]) - other->data()[i]));
  }
  return worst;
}

// As tests/apps/data_parallel_test.cpp: 577 rows = 18 batches of 32 and a last batch of 1 (with 2
// ranks one share of it is empty).
constexpr int kRows = 577;
const std::string kTrain =
    " train --device cuda --model mlp:16-32-16-10 --epochs 2 --batch-size 32 --seed 3 -q --json --threads 1";
constexpr int64_t kBytesPerStep = (16 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10) * 4 + 8;

std::string mpirun(int ranks, const std::string& env = "") {
  return std::string(NNR_MPIRUN) + " --oversubscribe --allow-run-as-root -np " + std::to_string(ranks) +
         " -x NVIDIA_TF32_OVERRIDE " + env + " " + NNR_BINARY;
}

// A row mask on the first weight, an element mask on the second, the biases open.
void set_masks(nnr::Sequential& model) {
  const std::vector<nnr::Parameter*> params = model.parameters();
  REQUIRE(params.size() == 4);
  params[0]->mask = nnr::UpdateMask::of_rows({1, 2, 3, 7, 20, 21, 31});
  std::vector<uint8_t> flags(static_cast<size_t>(params[2]->value.numel()), 0);
  for (size_t i = 0; i < flags.size(); i += 3) flags[i] = 1;
  params[2]->mask = nnr::UpdateMask::of_elements(flags);
}

}  // namespace

TEST_CASE("NNR_COLLECTIVE=nccl nnr train --device cuda runs the NCCL step on one GPU and gives its weights",
          "[one_gpu]") {
  TempDir dir;
  write_class_csv(dir / "train.csv", kRows, 41);
  const std::string args = kTrain + " --data " + (dir / "train.csv");
  const Run plain = run_captured(std::string(NNR_BINARY) + args + " -o " + (dir / "plain.safetensors"), dir);
  INFO(plain.err);
  REQUIRE(plain.code == 0);
  const Run forced =
      run_captured("NNR_COLLECTIVE=nccl " + std::string(NNR_BINARY) + args + " -o " + (dir / "nccl.safetensors"), dir);
  INFO(forced.err);
  REQUIRE(forced.code == 0);
  const nlohmann::json report = nlohmann::json::parse(forced.out);
  CHECK(report["data_parallel"]["backend"] == "nccl");
  CHECK(report["data_parallel"]["ranks"] == 1);
  CHECK(report["data_parallel"]["bytes_all_reduced_per_step"] == kBytesPerStep);
  // One rank: the same forward and backward, the gradient packed, summed over one rank with scale
  // 1 and unpacked: the same update up to rounding in NCCL's copy (none expected).
  CHECK(max_difference(dir / "plain.safetensors", dir / "nccl.safetensors") <= 1e-6);
}

TEST_CASE("the device data-parallel step with row and element masks (NCCL, one rank) matches the CPU step",
          "[one_gpu]") {
  nnr::Collective& nccl = nnr::cuda_collective();
  REQUIRE(std::string(nccl.name()) == "nccl");
  REQUIRE(nccl.cuda_device() >= 0);
  nnr::Context ctx(nccl.cuda_device());
  const nnr::Dataset data = separable_dataset(96, 8);
  nnr::Batcher batches(data, nnr::BatcherOptions{32, true, false}, nnr::Rng(9));
  nnr::Sequential cpu = nnr::build_model("mlp:16-32-10", 11), gpu = nnr::build_model("mlp:16-32-10", 11);
  set_masks(cpu);
  set_masks(gpu);
  gpu.to(nnr::Device::CUDA, ctx);
  nnr::broadcast_parameters(gpu, nccl, 0);  // one rank: NCCL's broadcast leaves the weights as they are
  auto cpu_optimizer = nnr::make_optimizer({"adam", 0.01f, 0.0f, 0.0f});
  auto gpu_optimizer = nnr::make_optimizer({"adam", 0.01f, 0.0f, 0.0f});
  int64_t open = 0;
  for (nnr::Parameter* p : gpu.parameters())
    for (const auto& [b, e] : nnr::open_gradient_ranges(*p)) open += e - b;
  nnr::StepScratch cpu_scratch, gpu_scratch;
  std::vector<float> flat;
  nnr::Batch batch;
  while (batches.next(batch)) {
    const int64_t before = nccl.bytes_all_reduced();
    const double a = nnr::train_step_data_parallel(cpu, *cpu_optimizer, batch, nnr::collective(), cpu_scratch, flat);
    const double b = nnr::train_step_data_parallel(gpu, *gpu_optimizer, batch, nccl, gpu_scratch, flat);
    CHECK(b == Approx(a).epsilon(1e-4));
    CHECK(nccl.bytes_all_reduced() - before == open * 4 + 8);  // the open entries, and the loss on the host
  }
  CHECK(nnr::parameters_identical(gpu, nccl));
  gpu.to(nnr::Device::CPU, ctx);
  const std::vector<nnr::Parameter*> p = cpu.parameters(), q = gpu.parameters();
  for (size_t k = 0; k < p.size(); ++k) {
    INFO(p[k]->name);
    double worst = 0.0;
    for (int64_t i = 0; i < p[k]->value.numel(); ++i)
      worst = std::max(worst, std::fabs(static_cast<double>(p[k]->value.data()[i]) - q[k]->value.data()[i]));
    // fp32 GEMMs in another order on each device (as tests/engine/cuda/train_cuda_test.cpp): three
    // steps keep them far below 1e-4, while a misplaced range moves entries by about lr = 1e-2.
    CHECK(worst <= 1e-4);
  }
}

TEST_CASE("mpirun -np 2 nnr train --device cuda gives the weights of one GPU with the same global batch", "[two_gpus]") {
  TempDir dir;
  write_class_csv(dir / "train.csv", kRows, 42);
  for (const std::string optimizer : {"adam", "sgd"}) {
    INFO(optimizer);
    const std::string args = kTrain + " --optimizer " + optimizer + " --data " + (dir / "train.csv");
    const Run one = run_captured(std::string(NNR_BINARY) + args + " -o " + (dir / "one.safetensors"), dir);
    INFO(one.err);
    REQUIRE(one.code == 0);
    const nlohmann::json one_report = nlohmann::json::parse(one.out);
    const Run two = run_captured(mpirun(2) + args + " -o " + (dir / "two.safetensors"), dir);
    INFO(two.err);
    REQUIRE(two.code == 0);
    const nlohmann::json report = nlohmann::json::parse(two.out);  // rank 0's alone
    CHECK(report["data_parallel"]["backend"] == "nccl");
    CHECK(report["data_parallel"]["ranks"] == 2);
    CHECK(report["data_parallel"]["steps"] == 2 * 19);
    CHECK(report["data_parallel"]["bytes_all_reduced_per_step"] == kBytesPerStep);
    for (size_t e = 0; e < 2; ++e)
      CHECK(report["epochs"][e]["loss"].get<double>() ==
            Approx(one_report["epochs"][e]["loss"].get<double>()).epsilon(1e-5));
    // Float sums in another order (each rank's share, then across ranks), as on the CPU ranks:
    // 1e-5 absolute on weights of magnitude ~0.1 to 1 (the CPU test's tolerance).
    CHECK(max_difference(dir / "one.safetensors", dir / "two.safetensors") <= 1e-5);
  }
}

TEST_CASE("a rank that hangs before the gradients' NCCL all-reduce ends the CUDA run after the timeout", "[two_gpus]") {
  TempDir dir;
  write_class_csv(dir / "train.csv", kRows, 45);
  const auto start = std::chrono::steady_clock::now();
  // Rank 1 answers the loss's all-reduce (MPI) of step 6, then stops: rank 0 waits in NCCL.
  const Run r = run_captured(mpirun(2, "-x NNR_TEST_RANK_FAULT=devhang:1:5 -x NNR_COLLECTIVE_TIMEOUT=2") + kTrain +
                                 " --data " + (dir / "train.csv") + " -o " + (dir / "m.safetensors"),
                             dir);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  INFO(r.err);
  CHECK(r.code != 0);
  CHECK(r.err.find("test fault: rank 1 hangs after 5 steps and the loss's all-reduce") != std::string::npos);
  CHECK(r.err.find("error: [collective] rank 0 of 2: all_reduce_sum_device of ") != std::string::npos);
  CHECK(r.err.find("waited 2 s for the other ranks: a rank died or hangs") != std::string::npos);
  CHECK_FALSE(exists(dir / "m.safetensors"));
  CHECK(seconds < 30.0);
}

namespace {

// As tests/apps/data_parallel_test.cpp: two rounds after the base with the bandit presets and full
// retraining, on the device.
const std::string kStream =
    " stream --device cuda --scenario split --chunks 3 --model mlp:16-24-10 --epochs 1 --batch-size 16 --memory 60"
    " --probe 20 --rows-per-group 4 --weight-budget 0.5 --seed 4 --threads 1 -q --json --compare paper,bandit-ewc,full";

}  // namespace

TEST_CASE("mpirun -np 2 nnr stream --device cuda makes the bandit choices and weights of one GPU", "[two_gpus]") {
  TempDir dir;
  write_class_csv(dir / "train.csv", 300, 43);
  write_class_csv(dir / "test.csv", 100, 44);
  const std::string args = kStream + " --data " + (dir / "train.csv") + " --test-data " + (dir / "test.csv");
  const Run one = run_captured(std::string(NNR_BINARY) + args + " --save-models " + (dir / "one"), dir);
  INFO(one.err);
  REQUIRE(one.code == 0);
  const nlohmann::json one_report = nlohmann::json::parse(one.out);
  const Run two = run_captured(mpirun(2) + args + " --save-models " + (dir / "two"), dir);
  INFO(two.err);
  REQUIRE(two.code == 0);
  const nlohmann::json report = nlohmann::json::parse(two.out);  // rank 0's alone
  CHECK(report["data_parallel"]["ranks"] == 2);
  CHECK(report["data_parallel"]["bytes_all_reduced"].get<int64_t>() > 0);
  CHECK(bandit_choices(report) == bandit_choices(one_report));
  // Only the open entries travel (paper opens half the weights at --weight-budget 0.5).
  const auto& paper_round = report["strategies"][0]["rounds"][1]["choices"];
  const int64_t params = 16 * 24 + 24 + 24 * 10 + 10;
  CHECK(paper_round["data_parallel"]["bytes_all_reduced_per_step"] ==
        static_cast<int64_t>(std::llround(paper_round["weights"]["open_fraction"].get<double>() * params)) * 4 + 8);
  for (size_t s = 0; s < 3; ++s) {
    const auto& a = one_report["strategies"][s];
    const auto& b = report["strategies"][s];
    INFO(a["strategy"]);
    for (size_t i = 0; i < a["accuracy_matrix"].size(); ++i)
      for (size_t j = 0; j < a["accuracy_matrix"][i].size(); ++j)
        CHECK(b["accuracy_matrix"][i][j].get<double>() ==
              Approx(a["accuracy_matrix"][i][j].get<double>()).margin(0.011));  // one test sample of 100
    // The CPU ranks' tolerance (float sums in another order): 1e-4 absolute.
    const std::string name = a["strategy"];
    CHECK(max_difference(dir / ("one/" + name + ".safetensors"), dir / ("two/" + name + ".safetensors")) <= 1e-4);
  }
}
