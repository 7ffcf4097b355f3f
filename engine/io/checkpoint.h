#pragma once
// Checkpoints are standard safetensors files, so PyTorch and Hugging Face tools read nnr's
// models and nnr reads theirs:
//   [8 bytes: header length n, little-endian u64][n bytes: JSON header][raw little-endian data]
// The header maps each tensor name to {"dtype","shape","data_offsets":[begin,end]} (offsets
// relative to the data area) plus an optional "__metadata__" object of string -> string.
// Names and layouts follow PyTorch's nn.Sequential state_dict ("0.weight" [out, in], "0.bias",
// conv weights [out, in, kh, kw]).
//
// nnr's own facts go in __metadata__ (all strings, as safetensors requires):
//   nnr.format_version      kCheckpointFormatVersion
//   nnr.model_spec          the model spec (written by the caller through `metadata`)
//   nnr.crc32.<tensor>      CRC32 (zlib) of the tensor's stored bytes, 8 lowercase hex digits
//   nnr.header_crc32        CRC32 of every tensor entry and every other metadata pair, so a
//                           damaged header (a changed name, shape or spec) is caught too
// safetensors itself has no checksum; files without nnr.format_version (written by PyTorch)
// load without CRC checks.
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/core/tensor.h"

namespace nnr {

constexpr const char* kCheckpointFormatVersion = "1";
constexpr const char* kMetaFormatVersion = "nnr.format_version";
constexpr const char* kMetaModelSpec = "nnr.model_spec";
constexpr const char* kMetaCrcPrefix = "nnr.crc32.";
constexpr const char* kMetaHeaderCrc = "nnr.header_crc32";
// Largest JSON header nnr reads: the bound safetensors itself uses.
constexpr uint64_t kMaxCheckpointHeaderBytes = 100'000'000;

struct NamedTensor {
  std::string name;
  Tensor value;
};

struct Checkpoint {
  std::string path;                             // the file it was loaded from
  std::vector<NamedTensor> tensors;             // in file order (the order they were saved in)
  std::map<std::string, std::string> metadata;  // all of __metadata__, nnr keys included

  const Tensor* find(const std::string& name) const;  // nullptr when absent
  // The tensor `name`, which must exist with exactly `expected` shape; the error names the file,
  // the tensor and both shapes.
  const Tensor& require(const std::string& name, const Shape& expected) const;
};

// Writes a safetensors file atomically (temporary file, fsync, rename, directory fsync): on any
// failure `path` keeps its previous content, the temporary file is removed, and nnr::Error names
// the path and the system's reason ("No space left on device"). Tensors are stored as F32 in the
// order given. Refuses empty or duplicate names, "__metadata__", undefined or non-CPU tensors,
// non-finite values (a diverged model must not replace a good checkpoint) and metadata keys that
// nnr sets itself (nnr.format_version, nnr.header_crc32, nnr.crc32.*).
void save_checkpoint(const std::string& path, const std::vector<std::pair<std::string, const Tensor*>>& tensors,
                     const std::map<std::string, std::string>& metadata);

// Reads and validates a safetensors file: size and header length bounds, JSON syntax, duplicate
// names, each entry's dtype (F32; F64, F16 and BF16 are converted to float32; others refused),
// shape (rank <= 4, element count matching the byte length), offsets inside the data area, not
// overlapping and covering it exactly, NaN/infinity, and, for nnr-written files, the format
// version and every CRC. Every error starts "[checkpoint] <path>:" and names the tensor at fault.
Checkpoint load_checkpoint(const std::string& path);

}  // namespace nnr
