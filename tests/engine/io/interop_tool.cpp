// The nnr side of the safetensors interop test (interop_test.py drives it):
//   nnr_checkpoint_interop write <path>   saves the reference model with save_checkpoint
//   nnr_checkpoint_interop check <path>   loads a file Python wrote and checks every value
// Both sides compute the same reference tensors from interop_reference(), whose values are
// exact in float32, so the check is bit-for-bit, not within a tolerance.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "engine/io/checkpoint.h"

namespace {

struct Reference {
  std::string name;
  nnr::Shape shape;
};

// nn.Sequential(Linear(7, 5), ReLU(), Linear(5, 3)) plus a conv weight [out, in, kh, kw].
const Reference kReference[] = {
    {"0.weight", {5, 7}}, {"0.bias", {5}}, {"2.weight", {3, 5}}, {"2.bias", {3}}, {"4.weight", {2, 1, 3, 3}}};

// Value i of tensor k; mirrored in interop_test.py as ((i * 7 + k * 13) % 101 - 50) / 64.
float reference_value(int k, int64_t i) { return static_cast<float>((i * 7 + k * 13) % 101 - 50) / 64.0f; }

nnr::Tensor reference_tensor(int k) {
  nnr::Tensor t(kReference[k].shape);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = reference_value(k, i);
  return t;
}

int write(const std::string& path) {
  std::vector<nnr::Tensor> tensors;
  for (int k = 0; k < 5; ++k) tensors.push_back(reference_tensor(k));
  std::vector<std::pair<std::string, const nnr::Tensor*>> named;
  for (int k = 0; k < 5; ++k) named.push_back({kReference[k].name, &tensors[k]});
  nnr::save_checkpoint(path, named, {{nnr::kMetaModelSpec, "mlp:7-5-3"}});
  return 0;
}

int check(const std::string& path) {
  const nnr::Checkpoint ck = nnr::load_checkpoint(path);
  int failures = 0;
  if (ck.tensors.size() != 5) {
    std::printf("FAILED: expected 5 tensors, got %zu\n", ck.tensors.size());
    ++failures;
  }
  for (int k = 0; k < 5; ++k) {
    const nnr::Tensor& t = ck.require(kReference[k].name, kReference[k].shape);
    const nnr::Tensor want = reference_tensor(k);
    if (std::memcmp(t.data(), want.data(), want.bytes()) != 0) {
      std::printf("FAILED: values of %s differ from the reference\n", kReference[k].name.c_str());
      ++failures;
    }
  }
  const auto format = ck.metadata.find("format");
  if (format == ck.metadata.end() || format->second != "np") {
    std::printf("FAILED: metadata 'format' should be 'np' as Python wrote it\n");
    ++failures;
  }
  if (!failures) std::printf("nnr loaded %zu tensors from %s\n", ck.tensors.size(), path.c_str());
  return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || (std::strcmp(argv[1], "write") != 0 && std::strcmp(argv[1], "check") != 0)) {
    std::fprintf(stderr, "usage: %s write|check <path>\n", argv[0]);
    return 2;
  }
  try {
    return std::strcmp(argv[1], "write") == 0 ? write(argv[2]) : check(argv[2]);
  } catch (const std::exception& e) {
    std::printf("FAILED: %s\n", e.what());
    return 1;
  }
}
