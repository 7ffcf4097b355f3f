#pragma once
// CSV: one sample per line, a label column (an integer class index) and numeric feature columns.
// A header line is optional; with CsvHeader::Auto the first non-blank line is a header when any
// of its cells is not a number. Blank lines are skipped; "\r\n" endings are accepted. Cells
// must be plain numbers (no quoting except in the header); ragged rows, empty or non-numeric
// cells, NaN and infinity are errors naming the line and the column (both 1-based).
#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/tensor.h"

namespace nnr {

enum class CsvHeader { Auto, Present, Absent };

struct CsvOptions {
  int label_column = 0;  // 0-based column of the label; negative: no label column (predict inputs)
  CsvHeader header = CsvHeader::Auto;
  char delimiter = ',';
  int32_t num_classes = 0;  // > 0: labels must be below it; else below kMaxClasses
};

struct CsvTable {
  Tensor features;                        // [rows, feature columns], values as written
  std::vector<int32_t> labels;            // empty when there is no label column
  std::vector<std::string> column_names;  // from the header, empty without one
};

CsvTable read_csv(const std::string& path, const CsvOptions& options = {});

}  // namespace nnr
