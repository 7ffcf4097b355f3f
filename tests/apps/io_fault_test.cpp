// File-system faults injected into the nnr binary by tests/apps/io_fault_shim.cpp (LD_PRELOAD):
// fsync, write and rename of the temporary file behind every atomic write fail in turn. Each must
// be reported (exit 1, a message naming the file and the failed call's errno text), leave the old
// file byte for byte and leave no temporary file behind. The shim announces each failure it
// injects on stderr, so a fault that never happened (a deleted fsync) fails the test.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "tests/apps/app_test_util.h"

namespace {

using namespace nnr::test;

struct Fault {
  const char* call;        // NNR_IO_FAULT
  const char* errno_text;  // strerror of the injected errno
};
const std::vector<Fault> kFaults = {
    {"fsync", "Input/output error"}, {"write", "No space left on device"}, {"rename", "Read-only file system"}};

std::string with_fault(const char* call) {
  // ASan (NNR_SANITIZE) insists on coming first in the library list; the shim is preloaded before it.
  return std::string("ASAN_OPTIONS=verify_asan_link_order=0 LD_PRELOAD=") + NNR_IO_FAULT_SHIM +
         (call ? std::string(" NNR_IO_FAULT=") + call : std::string()) + " ";
}

const std::string kTrain = " --model mlp:16-8-10 --epochs 1 --batch-size 32 --threads 1 -q";

}  // namespace

TEST_CASE("nnr train -o: failed fsync, write or rename keep the old model and leave no temporary file",
          "[cli][fault]") {
  TempDir dir, logs;
  const std::string data = dir / "d.csv", model = dir / "model.safetensors";
  write_class_csv(data, 200, 3);
  REQUIRE(run_nnr("train --data " + data + " -o " + model + kTrain + " --seed 1", logs).code == 0);
  const auto before = snapshot(dir.path());
  REQUIRE(before.at(model).size() > 100);
  for (const Fault& f : kFaults) {
    INFO("fault " << f.call);
    const Run r = run_nnr("train --data " + data + " -o " + model + kTrain + " --seed 2", logs, with_fault(f.call));
    INFO(r.err);
    REQUIRE(r.err.find(std::string("io_fault_shim: failing ") + f.call) != std::string::npos);  // it happened
    REQUIRE(r.code == 1);
    REQUIRE(r.err.find("cannot write " + model) != std::string::npos);
    REQUIRE(r.err.find(f.errno_text) != std::string::npos);
    if (std::string(f.call) != "write") REQUIRE(r.err.find(std::string(f.call) == "fsync" ? ": fsync: " : ": rename from ") != std::string::npos);
    // The old model byte for byte, and nothing else in the folder (no .model.safetensors.tmp-*).
    REQUIRE(snapshot(dir.path()) == before);
  }
  // The shim itself is transparent without NNR_IO_FAULT: the same run replaces the model.
  REQUIRE(run_nnr("train --data " + data + " -o " + model + kTrain + " --seed 2", logs, with_fault(nullptr)).code == 0);
  REQUIRE(read_file(model) != before.at(model));
}

TEST_CASE("nnr predict -o: failed fsync, write or rename keep the old predictions and leave no temporary file",
          "[cli][fault]") {
  TempDir dir, logs;
  const std::string data = dir / "d.csv", model = dir / "model.safetensors", inputs = dir / "x.csv",
                    out = dir / "pred.csv";
  write_class_csv(data, 200, 3);
  REQUIRE(run_nnr("train --data " + data + " -o " + model + kTrain + " --seed 1", logs).code == 0);
  {
    std::ofstream x(inputs);
    x << "0.1,0,3,0,0,0,0,0,0,0,0,0,0,0,0,0\n3,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0.2\n";
  }
  write_text(out, "old predictions\n");
  const auto before = snapshot(dir.path());
  for (const Fault& f : kFaults) {
    INFO("fault " << f.call);
    const Run r = run_nnr("predict --model " + model + " --input " + inputs + " -o " + out, logs, with_fault(f.call));
    INFO(r.err);
    REQUIRE(r.err.find(std::string("io_fault_shim: failing ") + f.call) != std::string::npos);
    REQUIRE(r.code == 1);
    REQUIRE(r.err.find("cannot write " + out) != std::string::npos);
    REQUIRE(r.err.find(f.errno_text) != std::string::npos);
    REQUIRE(snapshot(dir.path()) == before);
  }
  REQUIRE(run_nnr("predict --model " + model + " --input " + inputs + " -o " + out, logs, with_fault(nullptr)).code == 0);
  REQUIRE(read_file(out).rfind("label,p0", 0) == 0);
}

TEST_CASE("nnr train --model-dir: a failed fsync writes no version and leaves no temporary folder", "[cli][fault]") {
  TempDir dir, logs;
  const std::string data = dir / "d.csv", served = dir / "served";
  write_class_csv(data, 300, 3);
  // The paper strategy's 25 % weight budget must cover the output layer: mlp:16-64-64-10 does.
  const Run r = run_nnr("train --data " + data + " --model-dir " + served +
                            " --model mlp:16-64-64-10 --epochs 1 --batch-size 32 --threads 1 -q --seed 1",
                        logs, with_fault("fsync"));
  INFO(r.err);
  REQUIRE(r.err.find("io_fault_shim: failing fsync") != std::string::npos);
  REQUIRE(r.code == 1);
  REQUIRE(r.err.find("Input/output error") != std::string::npos);
  REQUIRE_FALSE(exists(served + "/1"));
  if (exists(served))
    for (const auto& entry : std::filesystem::recursive_directory_iterator(served)) {
      INFO(entry.path().string());
      REQUIRE(entry.path().filename().string().find(".tmp-") == std::string::npos);
    }
}
