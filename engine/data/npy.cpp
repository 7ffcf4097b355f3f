#include "engine/data/npy.h"

#include <cctype>
#include <cmath>
#include <cstring>
#include <utility>

#include "engine/core/error.h"
#include "engine/data/file_bytes.h"
#include "engine/data/labels.h"

namespace nnr {

namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "nnr reads little-endian NPY data in place");

const char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

size_t itemsize(const std::string& descr) {
  if (descr == "<f4" || descr == "<i4") return 4;
  if (descr == "<i8") return 8;
  if (descr == "|u1" || descr == "<u1") return 1;
  return 0;
}

// Finds `'key':` in the header dict and returns the position just after the colon.
size_t find_key(const std::string& header, const std::string& key, const std::string& where) {
  for (const char quote : {'\'', '"'}) {
    const std::string k = std::string(1, quote) + key + quote;
    size_t p = header.find(k);
    if (p == std::string::npos) continue;
    p += k.size();
    while (p < header.size() && std::isspace(static_cast<unsigned char>(header[p]))) ++p;
    if (p < header.size() && header[p] == ':') return p + 1;
  }
  throw Error(where + "corrupt header: no '" + key + "' entry in " + header);
}

size_t skip_space(const std::string& s, size_t p) {
  while (p < s.size() && std::isspace(static_cast<unsigned char>(s[p]))) ++p;
  return p;
}

}  // namespace

NpyArray read_npy(const std::string& path) {
  std::vector<uint8_t> bytes = read_file_bytes(path, "npy");
  const std::string where = "[npy] " + path + ": ";
  if (bytes.size() < kMagicLen + 2 || std::memcmp(bytes.data(), kMagic, kMagicLen) != 0)
    throw Error(where + "wrong magic: expected a NumPy .npy file starting \\x93NUMPY" +
                (bytes.size() < kMagicLen + 2 ? ", got only " + std::to_string(bytes.size()) + " bytes" : ""));
  const int major = bytes[6];
  size_t header_len = 0, header_start = 0;
  if (major == 1) {
    header_start = 10;
    if (bytes.size() < header_start) throw Error(where + "truncated: file ends inside the header");
    header_len = bytes[8] | (size_t(bytes[9]) << 8);
  } else if (major == 2 || major == 3) {
    header_start = 12;
    if (bytes.size() < header_start) throw Error(where + "truncated: file ends inside the header");
    header_len = bytes[8] | (size_t(bytes[9]) << 8) | (size_t(bytes[10]) << 16) | (size_t(bytes[11]) << 24);
  } else {
    throw Error(where + "unsupported .npy format version " + std::to_string(major) + ": expected 1, 2 or 3");
  }
  if (bytes.size() < header_start + header_len)
    throw Error(where + "truncated: header says " + std::to_string(header_len) + " bytes, file has " +
                std::to_string(bytes.size() - header_start));
  const std::string header(reinterpret_cast<const char*>(bytes.data() + header_start), header_len);

  NpyArray out;
  // descr
  size_t p = skip_space(header, find_key(header, "descr", where));
  if (p >= header.size() || (header[p] != '\'' && header[p] != '"'))
    throw Error(where + "corrupt header: 'descr' is not a string in " + header);
  const size_t end = header.find(header[p], p + 1);
  if (end == std::string::npos) throw Error(where + "corrupt header: unterminated 'descr' in " + header);
  out.descr = header.substr(p + 1, end - p - 1);
  if (itemsize(out.descr) == 0)
    throw Error(where + "unsupported dtype '" + out.descr +
                "': expected float32 '<f4' or uint8 '|u1' (labels may also be int32 '<i4' or int64 '<i8')");
  // fortran_order
  p = skip_space(header, find_key(header, "fortran_order", where));
  if (header.compare(p, 4, "True") == 0)
    throw Error(where + "Fortran-order array: expected C order (save with numpy.ascontiguousarray)");
  if (header.compare(p, 5, "False") != 0) throw Error(where + "corrupt header: bad 'fortran_order' in " + header);
  // shape: a tuple of non-negative integers
  p = skip_space(header, find_key(header, "shape", where));
  if (p >= header.size() || header[p] != '(')
    throw Error(where + "corrupt header: 'shape' is not a tuple in " + header);
  ++p;
  for (;;) {
    p = skip_space(header, p);
    if (p < header.size() && header[p] == ')') break;
    if (p >= header.size() || !std::isdigit(static_cast<unsigned char>(header[p])))
      throw Error(where + "corrupt header: bad 'shape' in " + header);
    int64_t d = 0;
    while (p < header.size() && std::isdigit(static_cast<unsigned char>(header[p]))) {
      d = d * 10 + (header[p++] - '0');
      if (d > (int64_t(1) << 40)) throw Error(where + "wrong dimensions: implausibly large shape in " + header);
    }
    out.shape.push_back(d);
    p = skip_space(header, p);
    if (p < header.size() && header[p] == ',') ++p;
  }
  if (out.shape.size() > static_cast<size_t>(Tensor::kMaxRank))
    throw Error(where + "wrong dimensions: rank " + std::to_string(out.shape.size()) + " shape " +
                shape_to_string(out.shape) + ", expected rank at most " + std::to_string(Tensor::kMaxRank));
  // Each dimension is at most 2^40, but their product (and the byte count) can still overflow:
  // refuse such a shape here, before anything is sized from it.
  int64_t numel = 0;
  uint64_t want = 0;
  if (!try_shape_numel(out.shape, numel) ||
      __builtin_mul_overflow(static_cast<uint64_t>(numel), static_cast<uint64_t>(itemsize(out.descr)), &want))
    throw Error(where + "wrong dimensions: implausibly large shape " + shape_to_string(out.shape) + " of " +
                out.descr + ": its size overflows 64 bits");
  const uint64_t got = bytes.size() - header_start - header_len;
  if (got < want)
    throw Error(where + "truncated: expected " + std::to_string(want) + " bytes of " + out.descr + " data for shape " +
                shape_to_string(out.shape) + ", got " + std::to_string(got));
  if (got > want)
    throw Error(where + "wrong dimensions: shape " + shape_to_string(out.shape) + " needs " + std::to_string(want) +
                " bytes of data, but the file has " + std::to_string(got - want) + " bytes more");
  // The data moves out of the file's buffer (shifted over the header) instead of being copied.
  bytes.erase(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(header_start + header_len));
  out.data = std::move(bytes);
  return out;
}

bool load_npy_features(const std::string& path, Tensor& floats, ByteFeatures& bytes) {
  NpyArray a = read_npy(path);
  const std::string where = "[npy] " + path + ": ";
  if (a.shape.empty()) throw Error(where + "wrong dimensions: a scalar array, expected features [N, ...]");
  Shape shape = a.shape;
  if (shape.size() == 1) shape.push_back(1);
  if (a.descr == "|u1" || a.descr == "<u1") {
    bytes.shape = shape;
    bytes.values = std::move(a.data);
    bytes.divisor = 255.0f;
    return true;
  }
  if (a.descr != "<f4")
    throw Error(where + "unsupported dtype '" + a.descr + "' for features: expected float32 '<f4' or uint8 '|u1'");
  Tensor t = Tensor::empty(shape);
  float* out = t.data();
  const int64_t n = t.numel();
  if (n) std::memcpy(out, a.data.data(), a.data.size());
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(out[i]))
      throw Error(where + "non-finite feature value " + std::to_string(out[i]) + " at flat index " +
                  std::to_string(i) + ": expected finite numbers");
  floats = std::move(t);
  return false;
}

Tensor load_npy(const std::string& path) {
  Tensor floats;
  ByteFeatures bytes;
  return load_npy_features(path, floats, bytes) ? decode_bytes(bytes) : std::move(floats);
}

std::vector<int32_t> load_npy_labels(const std::string& path, int32_t num_classes) {
  NpyArray a = read_npy(path);
  const std::string where = "[npy] " + path + ": ";
  if (a.shape.size() != 1)
    throw Error(where + "wrong dimensions: expected labels of shape [N], got " + shape_to_string(a.shape));
  const int64_t n = a.shape[0];
  const int64_t limit = num_classes > 0 ? num_classes : kMaxClasses;
  std::vector<int32_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    double v = 0;
    if (a.descr == "<f4") {
      float f;
      std::memcpy(&f, a.data.data() + 4 * i, 4);
      v = f;
    } else if (a.descr == "<i4") {
      int32_t x;
      std::memcpy(&x, a.data.data() + 4 * i, 4);
      v = x;
    } else if (a.descr == "<i8") {
      int64_t x;
      std::memcpy(&x, a.data.data() + 8 * i, 8);
      v = static_cast<double>(x);
    } else {
      v = a.data[i];
    }
    if (!(v >= 0 && v < static_cast<double>(limit)) || v != std::floor(v))
      throw Error(where + "label out of range at index " + std::to_string(i) + ": expected an integer in 0.." +
                  std::to_string(limit - 1) + ", got " + std::to_string(v));
    labels[i] = static_cast<int32_t>(v);
  }
  return labels;
}

void save_npy_raw(const std::string& path, const std::string& descr, const Shape& shape,
                  const std::vector<uint8_t>& data) {
  std::string dims;
  for (int64_t d : shape) dims += std::to_string(d) + ", ";
  // numpy writes "(3, 4)" but "(3,)" for one dimension.
  if (!shape.empty()) dims.resize(dims.size() - (shape.size() == 1 ? 1 : 2));
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Pad with spaces and a newline so the data starts on a 64-byte boundary, as numpy does.
  const size_t total = kMagicLen + 4 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::vector<uint8_t> bytes(kMagic, kMagic + kMagicLen);
  bytes.push_back(1);
  bytes.push_back(0);
  bytes.push_back(static_cast<uint8_t>(header.size() & 0xFF));
  bytes.push_back(static_cast<uint8_t>(header.size() >> 8));
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.insert(bytes.end(), data.begin(), data.end());
  write_file_bytes(path, bytes, "npy");
}

void save_npy(const std::string& path, const Tensor& t) {
  require_cpu(t, "npy");
  std::vector<uint8_t> data(t.bytes());
  if (t.numel()) std::memcpy(data.data(), t.data(), t.bytes());
  save_npy_raw(path, "<f4", t.shape(), data);
}

}  // namespace nnr
