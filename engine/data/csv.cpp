#include "engine/data/csv.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "engine/core/error.h"
#include "engine/data/file_bytes.h"
#include "engine/data/labels.h"

namespace nnr {

namespace {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
  return s.substr(b, e - b);
}

std::vector<std::string> split(const std::string& line, char delimiter) {
  std::vector<std::string> cells;
  size_t start = 0;
  for (;;) {
    const size_t p = line.find(delimiter, start);
    cells.push_back(trim(line.substr(start, p == std::string::npos ? std::string::npos : p - start)));
    if (p == std::string::npos) break;
    start = p + 1;
  }
  return cells;
}

// Parses a whole cell as a number; false when it is empty or has anything else in it.
bool parse_number(const std::string& cell, double& value) {
  if (cell.empty()) return false;
  char* end = nullptr;
  errno = 0;
  value = std::strtod(cell.c_str(), &end);
  return end == cell.c_str() + cell.size();
}

std::string unquote(const std::string& cell) {
  if (cell.size() >= 2 && cell.front() == '"' && cell.back() == '"') return cell.substr(1, cell.size() - 2);
  return cell;
}

}  // namespace

CsvTable read_csv(const std::string& path, const CsvOptions& options) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, "csv");
  const std::string text(bytes.begin(), bytes.end());
  const std::string where = "[csv] " + path + ": ";
  const bool has_label = options.label_column >= 0;
  const int64_t label_limit = options.num_classes > 0 ? options.num_classes : kMaxClasses;

  CsvTable out;
  std::vector<float> values;
  size_t columns = 0;  // fixed by the first line (header or data)
  bool first = true;
  int64_t rows = 0;
  size_t pos = 0;
  for (int64_t line_no = 1; pos < text.size(); ++line_no) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    const std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    if (trim(line).empty()) continue;
    const std::vector<std::string> cells = split(line, options.delimiter);
    const std::string at = where + "line " + std::to_string(line_no);

    if (first) {
      first = false;
      columns = cells.size();
      if (has_label && static_cast<size_t>(options.label_column) >= columns)
        throw InvalidArgument(at + ": label column " + std::to_string(options.label_column + 1) +
                              " does not exist: the file has " + std::to_string(columns) + " columns");
      if (columns < (has_label ? 2u : 1u))
        throw Error(at + ": expected " + std::string(has_label ? "a label column and " : "") +
                    "at least one feature column, got " + std::to_string(columns) + " column(s)");
      bool header = options.header == CsvHeader::Present;
      if (options.header == CsvHeader::Auto) {
        double v;
        for (const auto& c : cells) header = header || !parse_number(c, v);
      }
      if (header) {
        for (const auto& c : cells) out.column_names.push_back(unquote(c));
        continue;
      }
    }

    if (cells.size() != columns)
      throw Error(at + ": ragged row: expected " + std::to_string(columns) + " columns, got " +
                  std::to_string(cells.size()));
    for (size_t c = 0; c < cells.size(); ++c) {
      const std::string col = ", column " + std::to_string(c + 1);
      double v = 0;
      if (!parse_number(cells[c], v))
        throw Error(at + col + ": expected a number, got " +
                    (cells[c].empty() ? "an empty cell" : "'" + cells[c] + "'"));
      if (has_label && c == static_cast<size_t>(options.label_column)) {
        if (!(v >= 0 && v < static_cast<double>(label_limit)) || v != std::floor(v))
          throw Error(at + col + ": label out of range: expected an integer in 0.." + std::to_string(label_limit - 1) +
                      ", got '" + cells[c] + "'");
        out.labels.push_back(static_cast<int32_t>(v));
        continue;
      }
      const float f = static_cast<float>(v);
      if (!std::isfinite(f))
        throw Error(at + col + ": expected a finite number, got '" + cells[c] + "'" +
                    (std::isfinite(v) ? " (beyond float32 range)" : ""));
      values.push_back(f);
    }
    ++rows;
  }
  if (rows == 0)
    throw Error(where + "no data rows" + (out.column_names.empty() ? " (empty file)" : " after the header"));
  const int64_t features = static_cast<int64_t>(columns) - (has_label ? 1 : 0);
  out.features = Tensor::from_vector({rows, features}, values);
  return out;
}

}  // namespace nnr
