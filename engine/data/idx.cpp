#include "engine/data/idx.h"

#include <cstdio>
#include <utility>

#include "engine/core/error.h"
#include "engine/data/file_bytes.h"

namespace nnr {

namespace {

constexpr uint8_t kUnsignedByte = 0x08;
// The most values an IDX file may claim (1 TiB of bytes).
constexpr uint64_t kMaxValues = uint64_t(1) << 40;

std::string type_name(uint8_t type) {
  switch (type) {
    case 0x08:
      return "unsigned byte (0x08)";
    case 0x09:
      return "signed byte (0x09)";
    case 0x0B:
      return "int16 (0x0B)";
    case 0x0C:
      return "int32 (0x0C)";
    case 0x0D:
      return "float32 (0x0D)";
    case 0x0E:
      return "float64 (0x0E)";
    default: {
      char buf[8];
      std::snprintf(buf, sizeof buf, "0x%02X", type);
      return std::string("unknown type ") + buf;
    }
  }
}

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

}  // namespace

IdxArray read_idx(const std::string& path) {
  std::vector<uint8_t> bytes = read_file_bytes(path, "idx");
  const std::string where = "[idx] " + path + ": ";
  if (bytes.size() < 4)
    throw Error(where + "truncated: expected a 4-byte IDX header, got " + std::to_string(bytes.size()) + " bytes");
  if (bytes[0] != 0 || bytes[1] != 0) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%02X %02X %02X %02X", bytes[0], bytes[1], bytes[2], bytes[3]);
    throw Error(where + "wrong magic: expected an IDX file starting 00 00 08 <rank>, got " + buf);
  }
  const uint8_t type = bytes[2];
  const int rank = bytes[3];
  if (type != kUnsignedByte)
    throw Error(where + "unsupported value type " + type_name(type) + ": nnr reads unsigned-byte (0x08) IDX");
  if (rank < 1 || rank > Tensor::kMaxRank)
    throw Error(where + "wrong dimensions: expected rank 1 to " + std::to_string(Tensor::kMaxRank) + ", got " +
                std::to_string(rank));
  const size_t header = 4 + 4 * static_cast<size_t>(rank);
  if (bytes.size() < header)
    throw Error(where + "truncated: expected a " + std::to_string(header) + "-byte header for rank " +
                std::to_string(rank) + ", got " + std::to_string(bytes.size()) + " bytes");
  IdxArray out;
  uint64_t count = 1;
  for (int i = 0; i < rank; ++i) {
    const uint32_t d = read_be32(bytes.data() + 4 + 4 * i);
    out.dims.push_back(d);
    // Check before multiplying, so the product can never wrap around (to 0, say) and slip past.
    if (d != 0 && count > kMaxValues / d)
      throw Error(where + "wrong dimensions: " + shape_to_string(out.dims) + "... is implausibly large");
    count *= d;
  }
  const uint64_t got = bytes.size() - header;
  if (got < count)
    throw Error(where + "truncated: expected " + std::to_string(count) + " bytes of values for shape " +
                shape_to_string(out.dims) + ", got " + std::to_string(got));
  if (got > count)
    throw Error(where + "wrong dimensions: shape " + shape_to_string(out.dims) + " needs " + std::to_string(count) +
                " bytes of values, but the file has " + std::to_string(got - count) + " bytes more");
  // The values move out of the file's buffer (shifted over the header) instead of being copied.
  bytes.erase(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(header));
  out.values = std::move(bytes);
  return out;
}

ByteFeatures load_idx_image_bytes(const std::string& path) {
  IdxArray a = read_idx(path);
  if (a.dims.size() < 2)
    throw Error("[idx] " + path + ": wrong dimensions: expected images [N, H, W] (or [N, D]), got shape " +
                shape_to_string(a.dims) + " (is this a labels file?)");
  ByteFeatures out;
  out.shape = a.dims;
  if (out.shape.size() == 3) out.shape = {a.dims[0], 1, a.dims[1], a.dims[2]};
  out.values = std::move(a.values);
  out.divisor = 255.0f;
  return out;
}

Tensor load_idx_images(const std::string& path) { return decode_bytes(load_idx_image_bytes(path)); }

std::vector<int32_t> load_idx_labels(const std::string& path, int32_t num_classes) {
  IdxArray a = read_idx(path);
  if (a.dims.size() != 1)
    throw Error("[idx] " + path + ": wrong dimensions: expected labels of shape [N], got shape " +
                shape_to_string(a.dims) + " (is this an images file?)");
  std::vector<int32_t> labels(a.values.begin(), a.values.end());
  if (num_classes > 0) {
    for (size_t i = 0; i < labels.size(); ++i)
      if (labels[i] >= num_classes)
        throw Error("[idx] " + path + ": label out of range at index " + std::to_string(i) + ": expected 0.." +
                    std::to_string(num_classes - 1) + ", got " + std::to_string(labels[i]));
  }
  return labels;
}

void save_idx(const std::string& path, const Shape& dims, const std::vector<uint8_t>& values) {
  int64_t numel = 0;
  if (dims.empty() || dims.size() > static_cast<size_t>(Tensor::kMaxRank) || !try_shape_numel(dims, numel) ||
      numel != static_cast<int64_t>(values.size()))
    throw InvalidArgument("[idx] " + path + ": cannot save " + std::to_string(values.size()) + " values as shape " +
                          shape_to_string(dims));
  std::vector<uint8_t> bytes = {0, 0, kUnsignedByte, static_cast<uint8_t>(dims.size())};
  for (int64_t d : dims)
    for (int s = 24; s >= 0; s -= 8) bytes.push_back(static_cast<uint8_t>((static_cast<uint64_t>(d) >> s) & 0xFF));
  bytes.insert(bytes.end(), values.begin(), values.end());
  write_file_bytes(path, bytes, "idx");
}

}  // namespace nnr
