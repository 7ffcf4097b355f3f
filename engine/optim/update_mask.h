#pragma once
// UpdateMask: which entries of one parameter an optimizer step may change. Masked-out
// entries keep their value and their optimizer state bit-for-bit. This is the hook the
// bandit weight selection and the importance penalty use.
//   All      every entry
//   Rows     whole rows along dim 0 (output neurons of a Linear, filters of a Conv2d);
//            a row is numel / dim(0) consecutive elements. Empty = frozen parameter.
//   Elements a bitmap, one bit per element: bit (i % 32) of word i / 32.
#include <cstdint>
#include <string>
#include <vector>

namespace nnr {

struct UpdateMask {
  enum class Kind { All, Rows, Elements };
  Kind kind = Kind::All;
  std::vector<int64_t> rows;   // Kind::Rows: strictly increasing row indices
  std::vector<uint32_t> bits;  // Kind::Elements: ceil(numel / 32) words

  static UpdateMask all() { return {}; }
  static UpdateMask none() { return of_rows({}); }
  // Sorts and de-duplicates the indices.
  static UpdateMask of_rows(std::vector<int64_t> rows);
  // One flag per element; non-zero means "update".
  static UpdateMask of_elements(const std::vector<uint8_t>& flags);

  bool selects_all() const { return kind == Kind::All; }
  bool selects_none() const { return kind == Kind::Rows && rows.empty(); }
  bool selects_element(int64_t i, int64_t row_length) const;
  // Number of selected entries of a parameter with `numel` elements and `rows_total` rows.
  int64_t count(int64_t numel, int64_t rows_total) const;
  // Throws nnr::InvalidArgument (naming `what`) if the mask does not fit that parameter.
  void validate(int64_t numel, int64_t rows_total, const std::string& what) const;
};

}  // namespace nnr
