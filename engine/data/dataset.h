#pragma once
// A labelled data set in memory, and the one place that turns a user's data spec into one.
//
// Dataset spec grammar (load_dataset):
//   fashion-mnist              Fashion-MNIST training set (60 000 images), from Debian's
//   fashion-mnist:train        dataset-fashion-mnist package in kFashionMnistDir
//   fashion-mnist:test         Fashion-MNIST test set (10 000 images)
//   <file>.csv[.gz]            CSV: label in column 0, numeric features after it, header optional
//   <features>:<labels>        two files: features are IDX images (raw or .gz) or .npy (float32
//                              or uint8), labels are an IDX labels file or a 1-D integer .npy;
//                              which reader is used follows the extension (.npy/.npy.gz is NPY,
//                              anything else IDX). The spec must contain exactly one ':'.
// A lone .npy or IDX file has no labels and is refused by load_dataset; load_features reads it.
// Images (IDX, uint8 NPY) are scaled to [0, 1] as pixel / 255 (what torchvision's ToTensor does)
// and kept as bytes until a batch needs them (ByteFeatures); float32 NPY and CSV features are used
// as given. load_features returns floats in every case.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/tensor.h"
#include "engine/data/byte_features.h"

namespace nnr {

// 8-bit sources (IDX images, uint8 NPY) keep their bytes (a quarter of the floats' memory) and
// are converted to floats per batch (gather_rows) or per sample (copy_sample); other sources
// hold float features. Read samples through size(), sample_shape(), copy_sample() and
// gather_rows(const Dataset&, ...), which work for both; `features` is defined only for floats.
struct Dataset {
  Tensor features;              // [N, ...]: [N, 1, 28, 28] for IDX images, [N, F] for CSV; undefined
                                // while the features are kept as bytes (see stores_bytes)
  std::vector<int32_t> labels;  // one class index per sample; empty for unlabelled inputs
  int32_t num_classes = 0;      // max label + 1, or fixed by the source (10 for Fashion-MNIST)
  ByteFeatures bytes{};         // the features of an 8-bit source (shape empty otherwise)

  bool stores_bytes() const { return !bytes.shape.empty(); }
  // Features of either kind are present (a default-constructed Dataset has none).
  bool has_features() const { return stores_bytes() || features.defined(); }
  int64_t size() const;
  Shape sample_shape() const;   // features' shape without dimension 0
  int64_t sample_numel() const;  // values per sample
  // Writes sample i's features as floats to out[0, sample_numel()). Host data only.
  void copy_sample(int64_t i, float* out) const;
  // Converts byte features to a float `features` tensor in place (a no-op for float features),
  // for code that needs the whole array as floats.
  void decode_to_floats();
};

// Checks that labels (when given) match the sample count and lie in [0, num_classes), and fills
// num_classes from the labels when it is 0. `source` names the data in error messages.
Dataset make_dataset(Tensor features, std::vector<int32_t> labels, int32_t num_classes = 0,
                     const std::string& source = "dataset");
// The same for features kept as bytes (shape [N, ...] with a matching number of values).
Dataset make_dataset(ByteFeatures features, std::vector<int32_t> labels, int32_t num_classes = 0,
                     const std::string& source = "dataset");

Dataset load_dataset(const std::string& spec);

// Unlabelled inputs for prediction: .csv[.gz] (every column is a feature; no label column),
// .npy[.gz], or an IDX images file (raw or .gz).
Tensor load_features(const std::string& path);

constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
constexpr int32_t kFashionMnistClasses = 10;

struct DatasetFiles {
  std::string features;
  std::string labels;
};
// The IDX files of a Fashion-MNIST split ("train" or "test") in `dir`; does not touch the disk.
DatasetFiles fashion_mnist_files(const std::string& split, const std::string& dir = kFashionMnistDir);

}  // namespace nnr
