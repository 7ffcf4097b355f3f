#include "engine/data/dataset.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>

#include "engine/core/error.h"
#include "engine/data/csv.h"
#include "engine/data/file_bytes.h"
#include "engine/data/idx.h"
#include "engine/data/labels.h"
#include "engine/data/npy.h"

namespace nnr {

namespace {

const char* kAcceptedSpecs =
    "expected one of: 'fashion-mnist', 'fashion-mnist:train', 'fashion-mnist:test', "
    "'<file>.csv' (label in column 0), or '<features>:<labels>' where features are IDX images (raw or .gz) "
    "or .npy and labels are IDX labels or .npy";

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

bool is_npy(const std::string& path) { return has_extension(path, ".npy"); }
bool is_csv(const std::string& path) { return has_extension(path, ".csv"); }

// Features of an IDX or NPY file: 8-bit files as bytes (in `bytes`), float32 NPY as floats.
struct FeatureFile {
  Tensor floats;
  ByteFeatures bytes;
  bool is_bytes = false;
  int64_t size() const { return is_bytes ? bytes.shape[0] : floats.dim(0); }
};

FeatureFile load_feature_file(const std::string& path) {
  FeatureFile f;
  if (is_npy(path)) {
    f.is_bytes = load_npy_features(path, f.floats, f.bytes);
  } else {
    f.bytes = load_idx_image_bytes(path);
    f.is_bytes = true;
  }
  return f;
}

std::vector<int32_t> load_label_file(const std::string& path, int32_t num_classes) {
  return is_npy(path) ? load_npy_labels(path, num_classes) : load_idx_labels(path, num_classes);
}

Dataset load_fashion_mnist(const std::string& split) {
  const DatasetFiles files = fashion_mnist_files(split);
  for (const std::string& f : {files.features, files.labels})
    if (!file_exists(f))
      throw Error("[dataset] fashion-mnist:" + split + ": " + f +
                  " not found: install Debian's dataset-fashion-mnist package (scripts/setup.sh does)");
  ByteFeatures x = load_idx_image_bytes(files.features);
  std::vector<int32_t> y = load_idx_labels(files.labels, kFashionMnistClasses);
  return make_dataset(std::move(x), std::move(y), kFashionMnistClasses, files.features + " and " + files.labels);
}

}  // namespace

int64_t Dataset::size() const {
  if (stores_bytes()) return bytes.shape[0];
  return features.defined() && features.rank() > 0 ? features.dim(0) : 0;
}

Shape Dataset::sample_shape() const {
  if (stores_bytes()) return Shape(bytes.shape.begin() + 1, bytes.shape.end());
  if (!features.defined() || features.rank() == 0) return {};
  return Shape(features.shape().begin() + 1, features.shape().end());
}

int64_t Dataset::sample_numel() const { return has_features() ? shape_numel(sample_shape()) : 0; }

void Dataset::copy_sample(int64_t i, float* out) const {
  const int64_t n = size();
  if (i < 0 || i >= n)
    throw InvalidArgument("[dataset] sample " + std::to_string(i) + " is outside [0, " + std::to_string(n) + ")");
  const int64_t per = sample_numel();
  if (stores_bytes()) {
    decode_bytes(bytes.values.data() + i * per, per, bytes.divisor, out);
    return;
  }
  require_cpu(features, "dataset");
  std::copy(features.data() + i * per, features.data() + (i + 1) * per, out);
}

void Dataset::decode_to_floats() {
  if (!stores_bytes()) return;
  features = decode_bytes(bytes);
  bytes = ByteFeatures{};
}

namespace {

Dataset checked_dataset(int64_t n, std::vector<int32_t> labels, int32_t num_classes, const std::string& source) {
  const std::string where = "[dataset] " + source + ": ";
  if (!labels.empty() && static_cast<int64_t>(labels.size()) != n)
    throw InvalidArgument(where + "wrong dimensions: " + std::to_string(n) + " samples of features but " +
                          std::to_string(labels.size()) + " labels");
  if (num_classes < 0 || num_classes > kMaxClasses)
    throw InvalidArgument(where + "num_classes must be in 1.." + std::to_string(kMaxClasses) + ", got " +
                          std::to_string(num_classes));
  const int32_t limit = num_classes > 0 ? num_classes : kMaxClasses;
  int32_t max_label = -1;
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= limit)
      throw InvalidArgument(where + "label out of range at sample " + std::to_string(i) + ": expected 0.." +
                            std::to_string(limit - 1) + ", got " + std::to_string(labels[i]));
    max_label = std::max(max_label, labels[i]);
  }
  Dataset d;
  d.labels = std::move(labels);
  d.num_classes = num_classes > 0 ? num_classes : max_label + 1;
  return d;
}

}  // namespace

Dataset make_dataset(Tensor features, std::vector<int32_t> labels, int32_t num_classes, const std::string& source) {
  if (!features.defined() || features.rank() < 1)
    throw InvalidArgument("[dataset] " + source + ": expected features of shape [N, ...], got " +
                          (features.defined() ? shape_to_string(features.shape()) : std::string("no tensor")));
  Dataset d = checked_dataset(features.dim(0), std::move(labels), num_classes, source);
  d.features = std::move(features);
  return d;
}

Dataset make_dataset(ByteFeatures features, std::vector<int32_t> labels, int32_t num_classes,
                     const std::string& source) {
  int64_t numel = 0;
  if (features.shape.empty() || features.shape.size() > static_cast<size_t>(Tensor::kMaxRank) ||
      !try_shape_numel(features.shape, numel) || numel != static_cast<int64_t>(features.values.size()))
    throw InvalidArgument("[dataset] " + source + ": expected byte features of shape [N, ...], got " +
                          std::to_string(features.values.size()) + " values for shape " +
                          shape_to_string(features.shape));
  if (!(features.divisor > 0.0f) || !std::isfinite(features.divisor))
    throw InvalidArgument("[dataset] " + source + ": byte features need a positive divisor, got " +
                          std::to_string(features.divisor));
  Dataset d = checked_dataset(features.shape[0], std::move(labels), num_classes, source);
  d.bytes = std::move(features);
  return d;
}

DatasetFiles fashion_mnist_files(const std::string& split, const std::string& dir) {
  std::string prefix;
  if (split == "train")
    prefix = "train";
  else if (split == "test")
    prefix = "t10k";
  else
    throw InvalidArgument("[dataset] fashion-mnist: unknown split '" + split + "': expected 'train' or 'test'");
  return {dir + "/" + prefix + "-images-idx3-ubyte.gz", dir + "/" + prefix + "-labels-idx1-ubyte.gz"};
}

Dataset load_dataset(const std::string& spec) {
  if (spec.empty()) throw InvalidArgument(std::string("[dataset] empty data spec: ") + kAcceptedSpecs);
  if (spec == "fashion-mnist") return load_fashion_mnist("train");
  const std::string fm = "fashion-mnist:";
  if (spec.compare(0, fm.size(), fm) == 0) return load_fashion_mnist(spec.substr(fm.size()));

  const size_t colon = spec.find(':');
  if (colon == std::string::npos) {
    if (is_csv(spec)) {
      CsvTable t = read_csv(spec);
      return make_dataset(std::move(t.features), std::move(t.labels), 0, spec);
    }
    throw InvalidArgument("[dataset] '" + spec + "': " +
                          (is_npy(spec) || file_exists(spec) ? "features without labels; " : "not a known data set; ") +
                          kAcceptedSpecs);
  }
  if (spec.find(':', colon + 1) != std::string::npos || colon == 0 || colon + 1 == spec.size())
    throw InvalidArgument("[dataset] '" + spec + "': a two-file spec needs exactly one ':' with a path on each side; " +
                          kAcceptedSpecs);
  const std::string features_path = spec.substr(0, colon), labels_path = spec.substr(colon + 1);
  if (is_csv(features_path) || is_csv(labels_path))
    throw InvalidArgument("[dataset] '" + spec + "': a CSV file holds its own labels; give it alone. " +
                          kAcceptedSpecs);
  FeatureFile x = load_feature_file(features_path);
  std::vector<int32_t> y = load_label_file(labels_path, 0);
  if (y.empty() && x.size() > 0)
    throw Error("[dataset] " + labels_path + ": no labels for the " + std::to_string(x.size()) + " samples of " +
                features_path);
  const std::string source = features_path + " and " + labels_path;
  if (x.is_bytes) return make_dataset(std::move(x.bytes), std::move(y), 0, source);
  return make_dataset(std::move(x.floats), std::move(y), 0, source);
}

Tensor load_features(const std::string& path) {
  if (is_csv(path)) {
    CsvOptions options;
    options.label_column = -1;
    return std::move(read_csv(path, options).features);
  }
  return is_npy(path) ? load_npy(path) : load_idx_images(path);
}

}  // namespace nnr
