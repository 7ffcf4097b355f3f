#pragma once
// NPY, NumPy's array file (numpy.save): magic "\x93NUMPY", version, a Python-dict header
// {'descr': '<f4', 'fortran_order': False, 'shape': (N, D), } padded to 64 bytes, then the data.
// nnr reads C-order little-endian arrays: float32 ('<f4') and uint8 ('|u1') features, and for
// labels also int32 ('<i4') and int64 ('<i8'), which is what numpy gives integer arrays by default.
// Fortran order, big-endian and other dtypes are rejected with the dtype named.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/tensor.h"
#include "engine/data/byte_features.h"

namespace nnr {

struct NpyArray {
  std::string descr;  // numpy dtype string as in the file, e.g. "<f4"
  Shape shape;
  std::vector<uint8_t> data;  // raw little-endian values, C order
};

// Parses the file (raw or .gz) and checks header, dtype support and that the data size matches
// the shape exactly. Errors name the file.
NpyArray read_npy(const std::string& path);

// Features: float32 values as stored (rejecting NaN and infinity), uint8 values / 255.
// Rank 1..4; a rank-1 array [N] becomes [N, 1] (N samples of one feature).
Tensor load_npy(const std::string& path);
// The same, except that uint8 arrays stay bytes (divisor 255): returns true and fills `bytes` for
// uint8, false and fills `floats` for float32. What load_dataset stores.
bool load_npy_features(const std::string& path, Tensor& floats, ByteFeatures& bytes);

// Labels: a rank-1 integer array (uint8, int32, int64, or float32 holding whole numbers).
// Every label must be in [0, num_classes) when num_classes > 0, else in [0, kMaxClasses).
std::vector<int32_t> load_npy_labels(const std::string& path, int32_t num_classes = 0);

// Writes a float32 C-order .npy (format 1.0) that numpy.load reads.
void save_npy(const std::string& path, const Tensor& t);
// Writes raw values under any dtype string: for tests and tools that need uint8/int64 files.
void save_npy_raw(const std::string& path, const std::string& descr, const Shape& shape,
                  const std::vector<uint8_t>& data);

}  // namespace nnr
