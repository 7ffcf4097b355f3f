// Data-parallel nnr train under Open MPI (issue #18): 2 and 3 CPU ranks give the weights of one
// process with the same global batch, the gradient buckets all-reduced during backward give the
// weights of one all-reduce after it, nnr train --model-dir writes from rank 0 the version one
// process writes, a bad split is refused, a rank that dies or hangs (also inside the buckets'
// nonblocking all-reduces) ends the run on every rank in bounded time without an output file, and what a CUDA run needs (the NCCL
// backend, no CUDA graph) is checked on every machine (its GPU runs: data_parallel_cuda_test.cpp). Registered only when CMake finds
// mpirun and MPI (tests/apps/CMakeLists.txt); otherwise ctest reports one skipped entry.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/io/checkpoint.h"
#include "tests/apps/app_test_util.h"

namespace {

using namespace nnr::test;
using Clock = std::chrono::steady_clock;

// 577 rows = 18 batches of 32 and a last batch of 1: with 3 ranks two shares of that batch are
// empty, and 32 rows split 11 + 11 + 10.
constexpr int kRows = 577;
const std::string kTrain = " train --model mlp:16-32-16-10 --epochs 2 --batch-size 32 --seed 3 -q --json --threads 1";

// Under ASan (CI's sanitizer build) LeakSanitizer would report what Open MPI keeps past
// MPI_Finalize, in plugins it has unloaded by then (frames of "<unknown module>" that no
// suppression can name): the ranks run with leak detection off and every other ASan check on. The
// single-process tests of the same training code keep their leak check.
std::string mpirun(int ranks, const std::string& env = "") {
  return std::string("ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 ") + NNR_MPIRUN +
         " --oversubscribe --allow-run-as-root -np " + std::to_string(ranks) + " " + env + " " + NNR_BINARY;
}

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

// 16·32 + 32 + 32·16 + 16 + 16·10 + 10 parameters in floats, and the loss in one double.
constexpr int64_t kBytesPerStep = (16 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10) * 4 + 8;

}  // namespace

TEST_CASE("mpirun -np 2 and -np 3 nnr train give the weights of one process with the same global batch", "[dist]") {
  TempDir dir;
  write_class_csv(dir / "train.csv", kRows, 11);
  for (const std::string optimizer : {"adam", "sgd"}) {
    const std::string args = kTrain + " --optimizer " + optimizer + " --data " + (dir / "train.csv");
    const Run one = run_captured(std::string(NNR_BINARY) + args + " -o " + (dir / "one.safetensors"), dir);
    REQUIRE(one.code == 0);
    const nlohmann::json one_report = nlohmann::json::parse(one.out);
    for (const int ranks : {2, 3}) {
      INFO(optimizer << " on " << ranks << " ranks");
      const std::string out = dir / ("ranks" + std::to_string(ranks) + ".safetensors");
      const Run many = run_captured(mpirun(ranks) + args + " -o " + out, dir);
      INFO(many.err);
      REQUIRE(many.code == 0);
      // Only rank 0 prints its report (and writes the file).
      const nlohmann::json report = nlohmann::json::parse(many.out);
      CHECK(report["data_parallel"]["ranks"] == ranks);
      CHECK(report["data_parallel"]["steps"] == 2 * 19);
      CHECK(report["data_parallel"]["bytes_all_reduced_per_step"] == kBytesPerStep);
      for (size_t e = 0; e < 2; ++e)
        CHECK(report["epochs"][e]["loss"].get<double>() ==
              Approx(one_report["epochs"][e]["loss"].get<double>()).epsilon(1e-5));
      // Float sums in another order (each rank's share, then across ranks): measured ≤ 3e-7 for
      // these runs; the tolerance is 1e-5 absolute on weights of magnitude ~0.1 to 1.
      CHECK(max_difference(dir / "one.safetensors", out) <= 1e-5);
    }
  }
}

TEST_CASE("mpirun -np 1 nnr train is the single-process run, byte for byte", "[dist]") {
  TempDir dir;
  write_class_csv(dir / "train.csv", kRows, 12);
  const std::string args = kTrain + " --data " + (dir / "train.csv");
  REQUIRE(run_captured(std::string(NNR_BINARY) + args + " -o " + (dir / "a.safetensors"), dir).code == 0);
  const Run under = run_captured(mpirun(1) + args + " -o " + (dir / "b.safetensors"), dir);
  INFO(under.err);
  REQUIRE(under.code == 0);
  CHECK(nlohmann::json::parse(under.out).count("data_parallel") == 0);
  CHECK(read_file(dir / "a.safetensors") == read_file(dir / "b.safetensors"));
}

TEST_CASE("a global batch smaller than the number of ranks exits 2 on every rank and writes nothing", "[dist]") {
  TempDir dir;
  write_class_csv(dir / "train.csv", 50, 13);
  const Run r = run_captured(
      mpirun(3) + " train --model mlp:16-8-10 --batch-size 2 -q --data " + (dir / "train.csv") + " -o " +
          (dir / "m.safetensors"),
      dir);
  CHECK(r.code != 0);
  CHECK(r.err.find("error: [train] --batch-size 2 is smaller than the 3 ranks") != std::string::npos);
  CHECK_FALSE(exists(dir / "m.safetensors"));
}

TEST_CASE("commands that are not data-parallel yet refuse to run under mpirun and write nothing", "[dist]") {
  TempDir dir;
  write_class_csv(dir / "train.csv", 60, 13);
  REQUIRE(run_captured(std::string(NNR_BINARY) + " train --model mlp:16-8-10 --epochs 1 -q --data " +
                           (dir / "train.csv") + " -o " + (dir / "m.safetensors"),
                       dir)
              .code == 0);
  const Run r = run_captured(mpirun(2) + " predict --model " + (dir / "m.safetensors") + " --input " +
                                 (dir / "train.csv") + " -o " + (dir / "p.csv"),
                             dir);
  CHECK(r.code != 0);
  CHECK(r.err.find("error: [nnr] predict is not data-parallel yet (2 ranks)") != std::string::npos);
  CHECK_FALSE(exists(dir / "p.csv"));
}

namespace {

// Two rounds after the base (3 chunks of a class-incremental stream) with the bandit presets and
// full retraining: sample bandit, weight bandit, SNI / online EWC, dark experience replay (bandit-der,
// whose replayed rows each rank matches within its share), λ fixed.
const std::string kStream =
    " stream --scenario split --chunks 3 --model mlp:16-24-10 --epochs 1 --batch-size 16 --memory 60 --probe 20"
    " --rows-per-group 4 --weight-budget 0.5 --seed 4 --threads 1 -q --json --compare paper,bandit-ewc,full,bandit-der";

}  // namespace

TEST_CASE("mpirun -np 2 and -np 3 nnr stream make the bandit choices and weights of one process", "[dist]") {
  TempDir dir;
  write_class_csv(dir / "train.csv", 300, 21);
  write_class_csv(dir / "test.csv", 100, 22);
  const std::string args = kStream + " --data " + (dir / "train.csv") + " --test-data " + (dir / "test.csv");
  const Run one = run_captured(std::string(NNR_BINARY) + args + " --save-models " + (dir / "one"), dir);
  INFO(one.err);
  REQUIRE(one.code == 0);
  const nlohmann::json one_report = nlohmann::json::parse(one.out);
  CHECK(one_report.count("data_parallel") == 0);
  for (const int ranks : {2, 3}) {
    INFO(ranks << " ranks");
    const std::string models = dir / ("ranks" + std::to_string(ranks));
    const Run many = run_captured(mpirun(ranks) + args + " --save-models " + models, dir);
    INFO(many.err);
    REQUIRE(many.code == 0);
    const nlohmann::json report = nlohmann::json::parse(many.out);  // rank 0's alone
    CHECK(report["data_parallel"]["ranks"] == ranks);
    CHECK(report["data_parallel"]["bytes_all_reduced"].get<int64_t>() > 0);
    CHECK(bandit_choices(report) == bandit_choices(one_report));
    // Only the open entries travel: paper and bandit-ewc open half the weights (--weight-budget
    // 0.5), full all of them. Per step: the open gradient entries as floats, and the loss.
    const auto& paper_round = report["strategies"][0]["rounds"][1]["choices"];
    const auto& full_round = report["strategies"][2]["rounds"][1]["choices"];
    const int64_t params = 16 * 24 + 24 + 24 * 10 + 10;
    CHECK(full_round["data_parallel"]["bytes_all_reduced_per_step"] == params * 4 + 8);
    CHECK(paper_round["data_parallel"]["bytes_all_reduced_per_step"] ==
          static_cast<int64_t>(std::llround(paper_round["weights"]["open_fraction"].get<double>() * params)) * 4 + 8);
    for (size_t s = 0; s < 4; ++s) {
      const auto& a = one_report["strategies"][s];
      const auto& b = report["strategies"][s];
      INFO(a["strategy"]);
      // Each rank counts its share of the steps, evaluations and importance estimates; their sum
      // is one process's: the work is split, not repeated.
      for (size_t r = 1; r < a["rounds"].size(); ++r) {
        CHECK(b["rounds"][r]["compute"]["forward_flops"] == a["rounds"][r]["compute"]["forward_flops"]);
        CHECK(b["rounds"][r]["compute"]["other_flops"] == a["rounds"][r]["compute"]["other_flops"]);
      }
      for (size_t i = 0; i < a["accuracy_matrix"].size(); ++i)
        for (size_t j = 0; j < a["accuracy_matrix"][i].size(); ++j)
          CHECK(b["accuracy_matrix"][i][j].get<double>() ==
                Approx(a["accuracy_matrix"][i][j].get<double>()).margin(0.011));  // one test sample of 100
      // Float sums in another order; measured ≤ 1e-6 on these runs, tolerance 1e-4 absolute.
      const std::string name = a["strategy"];
      CHECK(max_difference(dir / ("one/" + name + ".safetensors"), models + "/" + name + ".safetensors") <= 1e-4);
    }
  }
}

TEST_CASE("mpirun -np 3 nnr stream without the NCCL backend for --device cuda, or with a batch smaller than the ranks, fails writing nothing", "[dist]") {
  TempDir dir;
  write_class_csv(dir / "train.csv", 120, 23);
  const std::string args = " stream --scenario files --chunk " + (dir / "train.csv") + " --chunk " +
                           (dir / "train.csv") + " --model mlp:16-8-10 -q --report " + (dir / "report");
  // The NCCL backend is loaded only by a CUDA run under the launcher: where it is missing, every
  // rank names the library and the loader's reason.
  const Run cuda = run_captured(mpirun(3, "-x NNR_NCCL_BACKEND=/nonexistent/libnnr_nccl.so") + args + " --device cuda", dir);
  CHECK(cuda.code == 1);
  CHECK(cuda.err.find("error: [collective] a data-parallel CUDA run needs the NCCL backend, but it could not be "
                      "loaded (/nonexistent/libnnr_nccl.so: cannot open shared object file") != std::string::npos);
  const Run small = run_captured(mpirun(3) + args + " --batch-size 2", dir);
  CHECK(small.code == 2);
  CHECK(small.err.find("error: [stream] --batch-size 2 is smaller than the 3 ranks") != std::string::npos);
  CHECK_FALSE(exists(dir / "report"));
}

TEST_CASE("mpirun -np 2 nnr train --cuda-graph is refused on every rank before anything loads", "[dist]") {
  TempDir dir;
  write_class_csv(dir / "train.csv", 60, 24);
  const Run r = run_captured(mpirun(2) + " train --model mlp:16-8-10 --device cuda --cuda-graph -q --data " +
                                 (dir / "train.csv") + " -o " + (dir / "m.safetensors"),
                             dir);
  CHECK(r.code == 2);
  CHECK(r.err.find("error: [train] --cuda-graph is not data-parallel") != std::string::npos);
  CHECK_FALSE(exists(dir / "m.safetensors"));
}

TEST_CASE("NNR_COLLECTIVE=nccl: refused for a CPU run or an unknown value, and a missing libnnr_nccl.so is named", "[dist]") {
  TempDir dir;
  write_class_csv(dir / "train.csv", 60, 25);
  const std::string args = " train --model mlp:16-8-10 --epochs 1 -q --data " + (dir / "train.csv") + " -o " +
                           (dir / "m.safetensors");
  const Run cpu = run_captured("NNR_COLLECTIVE=nccl " + std::string(NNR_BINARY) + args, dir);
  CHECK(cpu.code == 2);
  CHECK(cpu.err.find("error: [train] NNR_COLLECTIVE=nccl selects the NCCL backend of --device cuda runs; this run "
                     "is on --device cpu (unset NNR_COLLECTIVE)") != std::string::npos);
  const Run unknown = run_captured("NNR_COLLECTIVE=gloo " + std::string(NNR_BINARY) + args, dir);
  CHECK(unknown.code == 2);
  CHECK(unknown.err.find("error: [collective] NNR_COLLECTIVE must be 'nccl'") != std::string::npos);
  // One process forced onto the NCCL backend loads it (and nothing else) before the device opens.
  const Run missing = run_captured("NNR_COLLECTIVE=nccl NNR_NCCL_BACKEND=/nonexistent/libnnr_nccl.so " +
                                       std::string(NNR_BINARY) + args + " --device cuda",
                                   dir);
  CHECK(missing.code == 1);
  CHECK(missing.err.find("error: [collective] a data-parallel CUDA run needs the NCCL backend, but it could not be "
                         "loaded (/nonexistent/libnnr_nccl.so: cannot open shared object file") != std::string::npos);
  CHECK_FALSE(exists(dir / "m.safetensors"));
}

TEST_CASE("a rank that exits mid-run ends the run on the other ranks with a clear error and no output", "[dist]") {
  TempDir dir;
  write_class_csv(dir / "train.csv", kRows, 14);
  const auto start = Clock::now();
  const Run r = run_captured(mpirun(2, "-x NNR_TEST_RANK_FAULT=exit:1:5") + kTrain + " --data " +
                                 (dir / "train.csv") + " -o " + (dir / "m.safetensors"),
                             dir);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  INFO(r.err);
  CHECK(r.code != 0);
  CHECK(r.err.find("test fault: rank 1 exits after 5 steps") != std::string::npos);
  CHECK(r.err.find("error: [collective] rank 0 of 2 was stopped by the MPI launcher (another rank failed") !=
        std::string::npos);
  CHECK_FALSE(exists(dir / "m.safetensors"));
  CHECK(seconds < 20.0);
}

TEST_CASE("a rank that hangs ends the run after the collective timeout with a clear error and no output", "[dist]") {
  TempDir dir;
  write_class_csv(dir / "train.csv", kRows, 15);
  const auto start = Clock::now();
  const Run r = run_captured(mpirun(2, "-x NNR_TEST_RANK_FAULT=hang:1:5 -x NNR_COLLECTIVE_TIMEOUT=2") + kTrain +
                                 " --data " + (dir / "train.csv") + " -o " + (dir / "m.safetensors"),
                             dir);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  INFO(r.err);
  CHECK(r.code != 0);
  CHECK(r.err.find("error: [collective] rank 0 of 2: all_reduce_sum") != std::string::npos);
  CHECK(r.err.find("waited 2 s for the other ranks: a rank died or hangs") != std::string::npos);
  CHECK(r.err.find("error: [collective] rank 1 of 2 was stopped by the MPI launcher") != std::string::npos);
  CHECK_FALSE(exists(dir / "m.safetensors"));
  CHECK(seconds < 20.0);
}

TEST_CASE("mpirun -np 2 nnr retrain writes the version one process writes, from rank 0 alone", "[dist]") {
  TempDir dir;
  write_class_csv(dir / "c0.csv", 200, 31, 0, 4);
  write_class_csv(dir / "c1.csv", 200, 32, 5, 9);
  write_class_csv(dir / "c2.csv", 200, 33, 0, 9);
  // Two copies of one version 1, started by one process (so that the rounds alone are compared);
  // paper, the default strategy, with its 25 % weight budget (the output layer is 11 % of the weights).
  const std::string start = std::string(NNR_BINARY) + " train --model mlp:16-64-64-10 --epochs 1 --batch-size 16 --seed 5"
                            " --threads 1 -q --data " + (dir / "c0.csv") + " --model-dir ";
  REQUIRE(run_captured(start + (dir / "one"), dir).code == 0);
  REQUIRE(run_captured(start + (dir / "two"), dir).code == 0);
  const std::string round = " retrain --threads 1 --json --max-regression 100 --data ";
  for (const std::string chunk : {"c1.csv", "c2.csv"}) {
    INFO(chunk);
    const Run one = run_captured(std::string(NNR_BINARY) + round + (dir / chunk) + " --model-dir " + (dir / "one"), dir);
    REQUIRE(one.code == 0);
    const Run two = run_captured(mpirun(2) + round + (dir / chunk) + " --model-dir " + (dir / "two"), dir);
    INFO(two.err);
    REQUIRE(two.code == 0);
    const nlohmann::json a = nlohmann::json::parse(one.out), b = nlohmann::json::parse(two.out);  // rank 0's alone
    CHECK(b["data_parallel"]["ranks"] == 2);
    CHECK(b["version"] == a["version"]);
    nlohmann::json choices = b["choices"];
    CHECK(choices["data_parallel"]["ranks"] == 2);
    choices.erase("data_parallel");
    CHECK(choices == a["choices"]);
    CHECK(b["new_validation_accuracy"].get<double>() == Approx(a["new_validation_accuracy"].get<double>()).margin(0.011));
    const std::string version = "/" + std::to_string(a["version"].get<int64_t>()) + "/model.safetensors";
    // Float sums in another order: measured ≤ 1e-6, tolerance 1e-4 absolute.
    CHECK(max_difference(dir / ("one" + version), dir / ("two" + version)) <= 1e-4);
  }
}

namespace {

// NNR_ALLREDUCE_BUCKET_BYTES for every rank: 0 is the single all-reduce after backward; 1 makes each
// parameter its own bucket; 700 closes the first bucket after the output layer and the middle
// layer's bias, so that a layer's weight and bias travel in different buckets (backward order:
// 4.bias 10, 4.weight 160, 2.bias 16 floats = 744 bytes, then 2.weight, then 0.bias and 0.weight);
// unset is the default (256 KiB: one bucket for this model).
std::string bucket_env(const std::string& bytes) {
  return bytes.empty() ? "" : "-x NNR_ALLREDUCE_BUCKET_BYTES=" + bytes;
}

}  // namespace

TEST_CASE("mpirun -np 2 nnr train: gradient buckets all-reduced during backward give bitwise the weights of one all-reduce", "[dist]") {
  TempDir dir;
  write_class_csv(dir / "train.csv", kRows, 16);
  const std::string args = kTrain + " --data " + (dir / "train.csv");
  const Run single = run_captured(mpirun(2, bucket_env("0")) + args + " -o " + (dir / "single.safetensors"), dir);
  INFO(single.err);
  REQUIRE(single.code == 0);
  const nlohmann::json single_report = nlohmann::json::parse(single.out);
  for (const std::string bytes : {"1", "700", ""}) {
    INFO("NNR_ALLREDUCE_BUCKET_BYTES=" << (bytes.empty() ? "(unset)" : bytes));
    const std::string out = dir / ("buckets" + bytes + ".safetensors");
    const Run bucketed = run_captured(mpirun(2, bucket_env(bytes)) + args + " -o " + out, dir);
    INFO(bucketed.err);
    REQUIRE(bucketed.code == 0);
    const nlohmann::json report = nlohmann::json::parse(bucketed.out);
    // The same bytes travel (the open entries and the loss), only in more calls.
    CHECK(report["data_parallel"]["bytes_all_reduced_per_step"] == kBytesPerStep);
    for (size_t e = 0; e < 2; ++e) CHECK(report["epochs"][e]["loss"] == single_report["epochs"][e]["loss"]);
    // Each entry is the sum of the same two floats (a + b = b + a): bit for bit.
    CHECK(read_file(out) == read_file(dir / "single.safetensors"));
  }
}

TEST_CASE("mpirun -np 3 nnr train: buckets of one parameter each against one all-reduce", "[dist]") {
  TempDir dir;
  write_class_csv(dir / "train.csv", kRows, 17);
  const std::string args = kTrain + " --data " + (dir / "train.csv");
  REQUIRE(run_captured(mpirun(3, bucket_env("0")) + args + " -o " + (dir / "single.safetensors"), dir).code == 0);
  const Run bucketed = run_captured(mpirun(3, bucket_env("1")) + args + " -o " + (dir / "buckets.safetensors"), dir);
  INFO(bucketed.err);
  REQUIRE(bucketed.code == 0);
  // Three addends: MPI adds them in another order for another message size, so not bitwise
  // (measured 6e-8 apart); tolerance 1e-6 absolute.
  CHECK(max_difference(dir / "single.safetensors", dir / "buckets.safetensors") <= 1e-6);
}

TEST_CASE("mpirun -np 2 nnr stream: bucketed all-reduces give the bandit choices and bitwise the weights of one all-reduce", "[dist]") {
  TempDir dir;
  write_class_csv(dir / "train.csv", 300, 26);
  write_class_csv(dir / "test.csv", 100, 27);
  const std::string args = kStream + " --data " + (dir / "train.csv") + " --test-data " + (dir / "test.csv");
  const Run single = run_captured(mpirun(2, bucket_env("0")) + args + " --save-models " + (dir / "single"), dir);
  INFO(single.err);
  REQUIRE(single.code == 0);
  const nlohmann::json single_report = nlohmann::json::parse(single.out);
  // Weight selections (paper and bandit-ewc open half the weights by rows): only open rows travel,
  // in buckets of whole parameters.
  for (const std::string bytes : {"1", "700", ""}) {
    INFO("NNR_ALLREDUCE_BUCKET_BYTES=" << (bytes.empty() ? "(unset)" : bytes));
    const std::string models = dir / ("buckets" + bytes);
    const Run bucketed = run_captured(mpirun(2, bucket_env(bytes)) + args + " --save-models " + models, dir);
    INFO(bucketed.err);
    REQUIRE(bucketed.code == 0);
    const nlohmann::json report = nlohmann::json::parse(bucketed.out);
    CHECK(bandit_choices(report) == bandit_choices(single_report));
    CHECK(report["data_parallel"]["bytes_all_reduced"] == single_report["data_parallel"]["bytes_all_reduced"]);
    for (const std::string name : {"paper", "bandit-ewc", "full", "bandit-der"}) {
      INFO(name);
      CHECK(read_file(models + "/" + name + ".safetensors") == read_file(dir / ("single/" + name + ".safetensors")));
    }
  }
}

TEST_CASE("a rank that hangs inside the gradient buckets ends the run after the collective timeout", "[dist]") {
  TempDir dir;
  write_class_csv(dir / "train.csv", kRows, 18);
  // buckethang: rank 1 starts its first bucket of step 6, then stops (mid-backward); sumhang: it
  // stops after the loss's all-reduce, before any bucket. Rank 0 waits in the buckets' wait.
  for (const std::string fault : {"buckethang", "sumhang"}) {
    INFO(fault);
    const auto start = Clock::now();
    const Run r = run_captured(mpirun(2, "-x NNR_TEST_RANK_FAULT=" + fault + ":1:5 -x NNR_COLLECTIVE_TIMEOUT=2 " +
                                             bucket_env("1")) +
                                   kTrain + " --data " + (dir / "train.csv") + " -o " + (dir / "m.safetensors"),
                               dir);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    INFO(r.err);
    CHECK(r.code != 0);
    CHECK(r.err.find("test fault: rank 1 hangs after 5 steps") != std::string::npos);
    // The wait of the 6 buckets (one per parameter), 1,242 floats in all.
    CHECK(r.err.find("error: [collective] rank 0 of 2: all_reduce_sum of 1242 floats in 6 nonblocking parts waited "
                     "2 s for the other ranks: a rank died or hangs") != std::string::npos);
    CHECK(r.err.find("error: [collective] rank 1 of 2 was stopped by the MPI launcher") != std::string::npos);
    CHECK_FALSE(exists(dir / "m.safetensors"));
    CHECK(seconds < 20.0);
  }
}

TEST_CASE("a rank that exits inside the gradient buckets ends the run on the other ranks", "[dist]") {
  TempDir dir;
  write_class_csv(dir / "train.csv", kRows, 19);
  const auto start = Clock::now();
  const Run r = run_captured(mpirun(2, "-x NNR_TEST_RANK_FAULT=bucketexit:1:5 " + bucket_env("1")) + kTrain +
                                 " --data " + (dir / "train.csv") + " -o " + (dir / "m.safetensors"),
                             dir);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  INFO(r.err);
  CHECK(r.code != 0);
  CHECK(r.err.find("test fault: rank 1 exits after 5 steps") != std::string::npos);
  CHECK(r.err.find("error: [collective] rank 0 of 2 was stopped by the MPI launcher (another rank failed") !=
        std::string::npos);
  CHECK_FALSE(exists(dir / "m.safetensors"));
  CHECK(seconds < 20.0);
}

TEST_CASE("mpirun -np 2 nnr train --model-dir writes from rank 0 the version one process writes, and it loads", "[dist]") {
  TempDir dir;
  write_class_csv(dir / "c0.csv", kRows, 34, 0, 4);
  write_class_csv(dir / "c1.csv", 200, 35, 5, 9);
  const std::string start = " train --model mlp:16-32-16-10 --epochs 2 --batch-size 32 --seed 6 --threads 1 -q --json"
                            " --data " + (dir / "c0.csv") + " --model-dir ";
  const Run one = run_captured(std::string(NNR_BINARY) + start + (dir / "one"), dir);
  INFO(one.err);
  REQUIRE(one.code == 0);
  const Run two = run_captured(mpirun(2) + start + (dir / "two"), dir);
  INFO(two.err);
  REQUIRE(two.code == 0);
  const nlohmann::json a = nlohmann::json::parse(one.out), b = nlohmann::json::parse(two.out);  // rank 0's alone
  CHECK(b["data_parallel"]["ranks"] == 2);
  CHECK(b["version"] == 1);
  CHECK(a["version"] == 1);
  CHECK(b["new_validation_accuracy"].get<double>() == Approx(a["new_validation_accuracy"].get<double>()).margin(0.02));
  // One version, whole: no temporary folder of a second writer.
  CHECK(snapshot(dir / "two").size() == snapshot(dir / "one").size());
  // Float sums in another order (the base training's steps, the importance estimate's shares):
  // measured 6e-8 on the weights, tolerance 1e-4 absolute; the retraining state (Ω up to ~16, θ*,
  // the memory) measured 3e-6, tolerance 1e-3.
  CHECK(max_difference(dir / "one/1/model.safetensors", dir / "two/1/model.safetensors") <= 1e-4);
  CHECK(max_difference(dir / "one/1/state.safetensors", dir / "two/1/state.safetensors") <= 1e-3);
  // The newest version loads (weights and retraining state): a round on it writes version 2.
  const Run round = run_captured(std::string(NNR_BINARY) + " retrain --threads 1 --json --max-regression 100 --data " +
                                     (dir / "c1.csv") + " --model-dir " + (dir / "two"),
                                 dir);
  INFO(round.err);
  REQUIRE(round.code == 0);
  const nlohmann::json r = nlohmann::json::parse(round.out);
  CHECK(r["base_version"] == 1);
  CHECK(r["version"] == 2);
  // A second start into the same directory is refused on every rank, and changes nothing.
  const auto before = snapshot(dir / "two");
  const Run again = run_captured(mpirun(2) + start + (dir / "two"), dir);
  CHECK(again.code == 2);
  CHECK(again.err.find("already holds version 2") != std::string::npos);
  CHECK(snapshot(dir / "two") == before);
}
