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
// Images (IDX, uint8 NPY) are scaled to [0, 1] as pixel / 255 (what torchvision's ToTensor does);
// float32 NPY and CSV features are used as given.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/tensor.h"

namespace nnr {

struct Dataset {
  Tensor features;              // [N, ...]: [N, 1, 28, 28] for IDX images, [N, F] for CSV
  std::vector<int32_t> labels;  // one class index per sample; empty for unlabelled inputs
  int32_t num_classes = 0;      // max label + 1, or fixed by the source (10 for Fashion-MNIST)

  int64_t size() const { return features.defined() && features.rank() > 0 ? features.dim(0) : 0; }
  Shape sample_shape() const;  // features' shape without dimension 0
};

// Checks that labels (when given) match the sample count and lie in [0, num_classes), and fills
// num_classes from the labels when it is 0. `source` names the data in error messages.
Dataset make_dataset(Tensor features, std::vector<int32_t> labels, int32_t num_classes = 0,
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
