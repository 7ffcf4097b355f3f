// save_checkpoint: builds the safetensors header and writes header and data atomically.
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/core/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/checkpoint.h"
#include "engine/io/checkpoint_crc.h"

namespace nnr {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian; nnr writes it in place");

namespace {

void check_inputs(const std::string& path, const std::vector<std::pair<std::string, const Tensor*>>& tensors,
                  const std::map<std::string, std::string>& metadata) {
  const std::string where = "[checkpoint] " + path + ": ";
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    if (name.empty()) throw InvalidArgument(where + "a tensor has an empty name");
    if (name == "__metadata__")
      throw InvalidArgument(where + "'__metadata__' is reserved by safetensors, not a tensor name");
    if (!seen.insert(name).second) throw InvalidArgument(where + "tensor '" + name + "' is given twice");
    if (!t || !t->defined()) throw InvalidArgument(where + "tensor '" + name + "' is undefined");
    if (t->device() != Device::CPU)
      throw InvalidArgument(where + "tensor '" + name + "' is on " + device_name(t->device()) + ", expected cpu");
    const float* v = t->data();
    for (int64_t i = 0; i < t->numel(); ++i)
      if (!std::isfinite(v[i]))
        throw InvalidArgument(where + "tensor '" + name + "' has a non-finite value (" + std::to_string(v[i]) +
                              ") at flat index " + std::to_string(i) + "; refusing to save a diverged model");
  }
  for (const auto& kv : metadata) {
    const std::string& key = kv.first;
    if (key == kMetaFormatVersion || key == kMetaHeaderCrc || key.rfind(kMetaCrcPrefix, 0) == 0)
      throw InvalidArgument(where + "metadata key '" + key + "' is set by save_checkpoint itself");
  }
}

}  // namespace

void save_checkpoint(const std::string& path, const std::vector<std::pair<std::string, const Tensor*>>& tensors,
                     const std::map<std::string, std::string>& metadata) {
  check_inputs(path, tensors, metadata);

  std::map<std::string, std::string> meta = metadata;
  meta[kMetaFormatVersion] = kCheckpointFormatVersion;
  std::vector<TensorEntry> entries;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    entries.push_back({name, "F32", t->shape(), offset, offset + t->bytes()});
    offset += t->bytes();
    meta[kMetaCrcPrefix + name] = crc32_hex(t->data(), t->bytes());
  }
  meta[kMetaHeaderCrc] = header_crc32_hex(entries, meta);

  // ordered_json keeps the tensors in the order given; __metadata__ first, as safetensors'
  // own writer does.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  header["__metadata__"] = meta;
  for (const TensorEntry& e : entries)
    header[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {e.begin, e.end}}};
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {  // invalid UTF-8 in a name or a value
    throw InvalidArgument("[checkpoint] " + path + ": cannot encode the header: " + e.what());
  }
  // Pad with spaces to a multiple of 8 so the data area is 8-byte aligned (safetensors does the same).
  text.append((8 - text.size() % 8) % 8, ' ');
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>((static_cast<uint64_t>(text.size()) >> (8 * i)) & 0xFF);

  std::vector<ByteSpan> pieces = {{length, sizeof length}, {text.data(), text.size()}};
  for (const auto& nt : tensors) pieces.push_back({nt.second->data(), nt.second->bytes()});
  write_file_atomically(path, pieces, "checkpoint");
}

const Tensor* Checkpoint::find(const std::string& name) const {
  for (const auto& nt : tensors)
    if (nt.name == name) return &nt.value;
  return nullptr;
}

const Tensor& Checkpoint::require(const std::string& name, const Shape& expected) const {
  const Tensor* t = find(name);
  if (!t) {
    std::string names;
    for (const auto& nt : tensors) names += (names.empty() ? "" : ", ") + nt.name;
    throw Error("[checkpoint] " + path + ": no tensor '" + name + "' (expected shape " + shape_to_string(expected) +
                "); the file has: " + (names.empty() ? "no tensors" : names));
  }
  if (t->shape() != expected)
    throw Error("[checkpoint] " + path + ": tensor '" + name + "' has shape " + shape_to_string(t->shape()) +
                ", expected " + shape_to_string(expected) + " for this model");
  return *t;
}

}  // namespace nnr
