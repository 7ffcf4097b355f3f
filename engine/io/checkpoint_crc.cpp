#include "engine/io/checkpoint_crc.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>

#include "engine/io/checkpoint.h"

namespace nnr {

namespace {

void append_field(std::string& out, const std::string& field) {
  out += std::to_string(field.size());
  out += ':';
  out += field;
}

}  // namespace

std::string crc32_hex(const void* data, size_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const Bytef* p = static_cast<const Bytef*>(data);
  while (size > 0) {  // zlib's crc32 takes a uInt length
    const uInt chunk = size > (1u << 30) ? (1u << 30) : static_cast<uInt>(size);
    crc = crc32(crc, p, chunk);
    p += chunk;
    size -= chunk;
  }
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08lx", static_cast<unsigned long>(crc & 0xFFFFFFFFul));
  return buf;
}

std::string header_crc32_hex(const std::vector<TensorEntry>& entries,
                             const std::map<std::string, std::string>& metadata) {
  std::vector<const TensorEntry*> sorted;
  for (const auto& e : entries) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](const TensorEntry* a, const TensorEntry* b) { return a->name < b->name; });
  std::string text;
  for (const TensorEntry* e : sorted) {
    append_field(text, e->name);
    append_field(text, e->dtype);
    append_field(text, shape_to_string(e->shape));
    append_field(text, std::to_string(e->begin) + "," + std::to_string(e->end));
  }
  text += '|';
  for (const auto& [key, value] : metadata) {
    if (key == kMetaHeaderCrc) continue;
    append_field(text, key);
    append_field(text, value);
  }
  return crc32_hex(text.data(), text.size());
}

}  // namespace nnr
