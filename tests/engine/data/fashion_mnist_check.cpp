// Loads the real Fashion-MNIST test split through the "fashion-mnist:test" shortcut. A separate
// program, not a Catch2 case, so that ctest can report SKIPPED (exit code 77) on machines without
// Debian's dataset-fashion-mnist package instead of a pass that checked nothing.
#include <sys/stat.h>

#include <cstdio>
#include <exception>
#include <vector>

#include "engine/data/dataset.h"

int main() {
  const nnr::DatasetFiles files = nnr::fashion_mnist_files("test");
  struct stat st {};
  if (::stat(files.features.c_str(), &st) != 0 || ::stat(files.labels.c_str(), &st) != 0) {
    std::printf("SKIPPED: %s not installed (Debian package dataset-fashion-mnist)\n", files.features.c_str());
    return 77;
  }
  try {
    const nnr::Dataset d = nnr::load_dataset("fashion-mnist:test");
    int failures = 0;
    auto check = [&](bool ok, const char* what) {
      if (!ok) {
        std::printf("FAILED: %s\n", what);
        ++failures;
      }
    };
    check(d.stores_bytes(), "pixels kept as bytes");
    check(d.size() == 10000 && d.sample_shape() == nnr::Shape({1, 28, 28}), "features are [10000, 1, 28, 28]");
    check(d.labels.size() == 10000, "10000 labels");
    check(d.num_classes == 10, "10 classes");
    float lo = 1, hi = 0;
    std::vector<float> sample(static_cast<size_t>(d.sample_numel()));
    for (int64_t i = 0; i < d.size(); ++i) {
      d.copy_sample(i, sample.data());
      for (float v : sample) {
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
      }
    }
    check(lo == 0.0f && hi == 1.0f, "pixels span exactly [0, 1]");
    std::vector<int> per_class(10, 0);
    for (int32_t y : d.labels) ++per_class[y];
    for (int c = 0; c < 10; ++c) check(per_class[c] == 1000, "1000 test images per class");
    if (failures == 0)
      std::printf("fashion-mnist:test: %lld samples of %s, 10 classes\n", static_cast<long long>(d.size()),
                  nnr::shape_to_string(d.sample_shape()).c_str());
    return failures ? 1 : 0;
  } catch (const std::exception& e) {
    std::printf("FAILED: %s\n", e.what());
    return 1;
  }
}
