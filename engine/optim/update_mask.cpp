#include "engine/optim/update_mask.h"

#include <algorithm>

#include "engine/core/error.h"

namespace nnr {

UpdateMask UpdateMask::of_rows(std::vector<int64_t> rows) {
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  UpdateMask m;
  m.kind = Kind::Rows;
  m.rows = std::move(rows);
  return m;
}

UpdateMask UpdateMask::of_elements(const std::vector<uint8_t>& flags) {
  UpdateMask m;
  m.kind = Kind::Elements;
  m.bits.assign((flags.size() + 31) / 32, 0u);
  for (size_t i = 0; i < flags.size(); ++i)
    if (flags[i]) m.bits[i / 32] |= 1u << (i % 32);
  return m;
}

bool UpdateMask::selects_element(int64_t i, int64_t row_length) const {
  switch (kind) {
    case Kind::All:
      return true;
    case Kind::Rows:
      return std::binary_search(rows.begin(), rows.end(), i / row_length);
    case Kind::Elements:
      return (bits[static_cast<size_t>(i / 32)] >> (i % 32)) & 1u;
  }
  return false;
}

int64_t UpdateMask::count(int64_t numel, int64_t rows_total) const {
  switch (kind) {
    case Kind::All:
      return numel;
    case Kind::Rows:
      return rows_total ? static_cast<int64_t>(rows.size()) * (numel / rows_total) : 0;
    case Kind::Elements: {
      int64_t n = 0;
      for (int64_t i = 0; i < numel; ++i) n += (bits[static_cast<size_t>(i / 32)] >> (i % 32)) & 1u;
      return n;
    }
  }
  return 0;
}

void UpdateMask::validate(int64_t numel, int64_t rows_total, const std::string& what) const {
  if (kind == Kind::Rows) {
    for (size_t i = 0; i < rows.size(); ++i) {
      const int64_t r = rows[i];
      if (r < 0 || r >= rows_total)
        throw InvalidArgument("[update mask] " + what + ": row " + std::to_string(r) + " outside [0, " +
                              std::to_string(rows_total) + ")");
      // selects_element binary-searches the list, and count() counts its entries.
      if (i > 0 && r <= rows[i - 1])
        throw InvalidArgument("[update mask] " + what + ": row list not strictly increasing: row " +
                              std::to_string(r) + " at position " + std::to_string(i) + " follows row " +
                              std::to_string(rows[i - 1]) + " (build it with UpdateMask::of_rows)");
    }
  } else if (kind == Kind::Elements) {
    const size_t words = static_cast<size_t>((numel + 31) / 32);
    if (bits.size() != words)
      throw InvalidArgument("[update mask] " + what + ": bitmap has " + std::to_string(bits.size()) +
                            " words, expected " + std::to_string(words) + " for " + std::to_string(numel) +
                            " elements");
  }
}

}  // namespace nnr
