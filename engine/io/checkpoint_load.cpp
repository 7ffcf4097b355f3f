// load_checkpoint: reads a safetensors file and validates every part of it before trusting it.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/core/error.h"
#include "engine/io/checkpoint.h"
#include "engine/io/checkpoint_crc.h"

namespace nnr {

namespace {

using json = nlohmann::json;

size_t dtype_size(const std::string& dtype) {
  if (dtype == "F32") return 4;
  if (dtype == "F64") return 8;
  if (dtype == "F16" || dtype == "BF16") return 2;
  return 0;
}

float half_to_float(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
  float v;
  if (exp == 0)
    v = std::ldexp(static_cast<float>(mant), -24);  // zero and subnormals
  else if (exp == 31)
    v = mant ? NAN : INFINITY;
  else
    v = std::ldexp(static_cast<float>(mant | 0x400), static_cast<int>(exp) - 25);
  return sign ? -v : v;
}

// Converts the stored bytes of one tensor into float32.
void convert(const std::string& dtype, const uint8_t* src, float* dst, int64_t n) {
  if (dtype == "F32") {
    if (n) std::memcpy(dst, src, static_cast<size_t>(n) * 4);
  } else if (dtype == "F64") {
    for (int64_t i = 0; i < n; ++i) {
      double d;
      std::memcpy(&d, src + 8 * i, 8);
      dst[i] = static_cast<float>(d);
    }
  } else if (dtype == "F16") {
    for (int64_t i = 0; i < n; ++i) dst[i] = half_to_float(static_cast<uint16_t>(src[2 * i] | (src[2 * i + 1] << 8)));
  } else {  // BF16: the top half of a float32
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t bits = (static_cast<uint32_t>(src[2 * i]) | (static_cast<uint32_t>(src[2 * i + 1]) << 8)) << 16;
      std::memcpy(dst + i, &bits, 4);
    }
  }
}

std::vector<uint8_t> read_whole_file(const std::string& path, const std::string& where) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) {
    const int error = errno;  // before the message's allocations can change it
    throw Error(where + "cannot open: " + std::strerror(error));
  }
  // Read straight into a buffer of the file's size plus one byte (the read that sees the end): no
  // regrowth, no copy. A file that grows meanwhile (or reports no size) makes the buffer double.
  struct stat st {};
  const size_t size = ::fstat(fileno(f.get()), &st) == 0 && st.st_size > 0 ? static_cast<size_t>(st.st_size) : 0;
  std::vector<uint8_t> bytes(size + 1);
  size_t filled = 0, n = 0;
  while ((n = std::fread(bytes.data() + filled, 1, bytes.size() - filled, f.get())) > 0) {
    filled += n;
    if (filled == bytes.size()) bytes.resize(2 * bytes.size());
  }
  if (std::ferror(f.get())) {
    const int error = errno;
    throw Error(where + "cannot read: " + std::strerror(error));
  }
  bytes.resize(filled);
  return bytes;
}

// Parses the header, refusing duplicate top-level names (nlohmann would keep the last silently).
json parse_header(const std::string& text, const std::string& where) {
  std::set<std::string> keys;
  std::string duplicate;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && !keys.insert(parsed.get<std::string>()).second)
      duplicate = parsed.get<std::string>();
    return true;
  };
  json header;
  try {
    header = json::parse(text, cb);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number beyond double (1e999)
    throw Error(where + "header is not valid JSON: " + e.what());
  }
  if (!duplicate.empty()) throw Error(where + "header names tensor '" + duplicate + "' twice");
  if (!header.is_object()) throw Error(where + "header is not a JSON object");
  return header;
}

TensorEntry parse_entry(const std::string& name, const json& v, const std::string& where) {
  const std::string at = where + "tensor '" + name + "': ";
  if (!v.is_object()) throw Error(at + "expected an object with dtype, shape and data_offsets");
  TensorEntry e;
  e.name = name;
  if (!v.contains("dtype") || !v["dtype"].is_string()) throw Error(at + "missing or non-string 'dtype'");
  e.dtype = v["dtype"].get<std::string>();
  if (dtype_size(e.dtype) == 0)
    throw Error(at + "unsupported dtype " + e.dtype + ": expected F32 (or F64, F16, BF16, converted to float32)");
  if (!v.contains("shape") || !v["shape"].is_array()) throw Error(at + "missing or non-array 'shape'");
  for (const json& d : v["shape"]) {
    if (!d.is_number_unsigned())
      throw Error(at + "shape " + v["shape"].dump() + " has a non-integer or negative entry");
    if (d.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      throw Error(at + "shape " + v["shape"].dump() + " has an entry beyond int64");
    e.shape.push_back(d.get<int64_t>());
  }
  if (e.shape.size() > static_cast<size_t>(Tensor::kMaxRank))
    throw Error(at + "rank " + std::to_string(e.shape.size()) + " shape " + shape_to_string(e.shape) +
                ", expected rank at most " + std::to_string(Tensor::kMaxRank));
  const json& off = v.contains("data_offsets") ? v["data_offsets"] : json();
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
    throw Error(at + "expected 'data_offsets' [begin, end] of two non-negative integers, got " + off.dump());
  e.begin = off[0].get<uint64_t>();
  e.end = off[1].get<uint64_t>();
  if (e.end < e.begin)
    throw Error(at + "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "] end before begin");
  // Dimensions are each at most 2^63 - 1; the element and byte counts are overflow-checked, so an
  // absurd shape is refused here and can never wrap around into a match with data_offsets.
  int64_t numel = 0;
  uint64_t want = 0;
  if (!try_shape_numel(e.shape, numel) ||
      __builtin_mul_overflow(static_cast<uint64_t>(numel), static_cast<uint64_t>(dtype_size(e.dtype)), &want))
    throw Error(at + "shape " + shape_to_string(e.shape) + " of " + e.dtype +
                " is implausibly large: its size overflows 64 bits, data_offsets give " +
                std::to_string(e.end - e.begin) + " bytes");
  if (want != e.end - e.begin)
    throw Error(at + "shape " + shape_to_string(e.shape) + " of " + e.dtype + " needs " + std::to_string(want) +
                " bytes, data_offsets give " + std::to_string(e.end - e.begin));
  return e;
}

void check_layout(std::vector<TensorEntry> entries, uint64_t data_size, const std::string& where) {
  std::sort(entries.begin(), entries.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;
  const TensorEntry* prev = nullptr;
  for (const TensorEntry& e : entries) {
    if (e.end > data_size)
      throw Error(where + "tensor '" + e.name + "': data_offsets [" + std::to_string(e.begin) + ", " +
                  std::to_string(e.end) + "] run past the data area of " + std::to_string(data_size) +
                  " bytes (file truncated?)");
    if (e.begin < covered)
      throw Error(where + "tensor '" + e.name + "' overlaps tensor '" + prev->name + "' (bytes " +
                  std::to_string(e.begin) + ".." + std::to_string(covered) + ")");
    if (e.begin > covered)
      throw Error(where + "data area not fully covered: bytes " + std::to_string(covered) + ".." +
                  std::to_string(e.begin) + " before tensor '" + e.name + "' belong to no tensor");
    covered = e.end;
    prev = &e;
  }
  if (covered != data_size)
    throw Error(where + "data area not fully covered: " + std::to_string(data_size - covered) +
                " bytes after the last tensor belong to no tensor");
}

void check_nnr_metadata(const std::map<std::string, std::string>& meta, const std::vector<TensorEntry>& entries,
                        const std::string& where) {
  const auto version = meta.find(kMetaFormatVersion);
  if (version == meta.end()) return;  // not written by nnr: nothing more to check
  if (version->second != kCheckpointFormatVersion)
    throw Error(where + "format version " + version->second + ", this nnr reads version " + kCheckpointFormatVersion +
                " (written by a newer nnr?)");
  const auto header_crc = meta.find(kMetaHeaderCrc);
  if (header_crc == meta.end()) throw Error(where + "nnr checkpoint without " + kMetaHeaderCrc);
  const std::string actual = header_crc32_hex(entries, meta);
  if (actual != header_crc->second)
    throw Error(where + "header is corrupt: its CRC32 is " + actual + ", expected " + header_crc->second +
                " (a tensor name, shape, offset or metadata value was changed)");
  std::set<std::string> names;
  for (const auto& e : entries) names.insert(e.name);
  const std::string prefix = kMetaCrcPrefix;
  for (const auto& kv : meta)
    if (kv.first.rfind(prefix, 0) == 0 && !names.count(kv.first.substr(prefix.size())))
      throw Error(where + "metadata has " + kv.first + " but no tensor '" + kv.first.substr(prefix.size()) +
                  "' (a tensor is missing)");
}

}  // namespace

Checkpoint load_checkpoint(const std::string& path) {
  const std::string where = "[checkpoint] " + path + ": ";
  const std::vector<uint8_t> bytes = read_whole_file(path, where);
  if (bytes.size() < 8)
    throw Error(where + "truncated: " + std::to_string(bytes.size()) +
                " bytes, a safetensors file has at least an 8-byte header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > kMaxCheckpointHeaderBytes)
    throw Error(where + "header length " + std::to_string(header_len) + " exceeds the " +
                std::to_string(kMaxCheckpointHeaderBytes) + "-byte limit (not a safetensors file?)");
  if (header_len > bytes.size() - 8)
    throw Error(where + "truncated: header length " + std::to_string(header_len) + " but only " +
                std::to_string(bytes.size() - 8) + " bytes follow");
  const std::string text(reinterpret_cast<const char*>(bytes.data() + 8), header_len);
  if (text.empty() || text[0] != '{') throw Error(where + "header does not start with '{' (not a safetensors file?)");
  const json header = parse_header(text, where);

  Checkpoint ck;
  ck.path = path;
  std::vector<TensorEntry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) throw Error(where + "__metadata__ is not an object of strings");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        if (!m.value().is_string())
          throw Error(where + "__metadata__ value of '" + m.key() + "' is not a string: " + m.value().dump());
        ck.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(it.key(), it.value(), where));
  }
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = bytes.size() - data_start;
  check_layout(entries, data_size, where);
  check_nnr_metadata(ck.metadata, entries, where);

  const bool has_crc = ck.metadata.count(kMetaFormatVersion) > 0;
  std::sort(entries.begin(), entries.end(),
            [](const TensorEntry& a, const TensorEntry& b) { return a.begin < b.begin; });
  for (const TensorEntry& e : entries) {
    const uint8_t* src = bytes.data() + data_start + e.begin;
    if (has_crc) {
      const auto expected = ck.metadata.find(kMetaCrcPrefix + e.name);
      if (expected == ck.metadata.end()) throw Error(where + "tensor '" + e.name + "' has no CRC32 in the metadata");
      const std::string actual = crc32_hex(src, e.end - e.begin);
      if (actual != expected->second)
        throw Error(where + "tensor '" + e.name + "' is corrupt: CRC32 of its bytes is " + actual + ", expected " +
                    expected->second);
    }
    Tensor t = Tensor::empty(e.shape);
    convert(e.dtype, src, t.data(), t.numel());
    for (int64_t i = 0; i < t.numel(); ++i)
      if (!std::isfinite(t[i]))
        throw Error(where + "tensor '" + e.name + "' has a non-finite value (" + std::to_string(t[i]) +
                    ") at flat index " + std::to_string(i) +
                    (e.dtype == "F64" ? " (F64 values beyond float32 range become infinite)" : ""));
    ck.tensors.push_back({e.name, std::move(t)});
  }
  return ck;
}

}  // namespace nnr
