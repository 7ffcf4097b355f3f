#include "apps/trainer/stream_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iterator>
#include <numeric>
#include <system_error>
#include <utility>

#include "engine/core/error.h"
#include "engine/io/atomic_file.h"

namespace nnr {
namespace {

using nlohmann::json;

// R[i][j] needs a column for every chunk and the same columns in every round, or R[j][j] and the
// column means are undefined; a ragged matrix means the driver lost an evaluation.
void check_matrix(const AccuracyMatrix& r) {
  if (r.empty()) throw InvalidArgument("[report] the accuracy matrix is empty (no rounds)");
  const size_t columns = r.front().size();
  for (size_t i = 1; i < r.size(); ++i)
    if (r[i].size() != columns)
      throw InvalidArgument("[report] ragged accuracy matrix: round 0 has " + std::to_string(columns) +
                            " chunk accuracies, round " + std::to_string(i) + " has " + std::to_string(r[i].size()));
  if (columns < r.size())
    throw InvalidArgument("[report] accuracy matrix has " + std::to_string(r.size()) + " rounds but only " +
                          std::to_string(columns) + " chunk columns; each round needs its own chunk's accuracy");
}

std::string format(const char* spec, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, spec, value);
  return buf;
}

// The shortest of %.15g / %.17g that reads back as the same double: clean text for CSV and SVG,
// and no precision lost for whoever parses the CSV.
std::string exact_number(double value) {
  std::string text = format("%.15g", value);
  if (std::isfinite(value) && std::strtod(text.c_str(), nullptr) != value) text = format("%.17g", value);
  return text;
}

std::string percent(double fraction) { return format("%.2f", 100.0 * fraction); }

// 950, 1.23k, 45.6M: three significant digits, so a column of counts stays narrow.
std::string count_with_suffix(double n) {
  static const char* const suffixes[] = {"", "k", "M", "G", "T"};
  size_t unit = 0;
  while (std::fabs(n) >= 999.5 && unit + 1 < std::size(suffixes)) {
    n /= 1000.0;
    ++unit;
  }
  return format("%.3g", n) + suffixes[unit];
}

std::string gflop(int64_t flops) { return format("%.3f", static_cast<double>(flops) / 1e9); }

// ---- JSON ----

json compute_json(const RoundCompute& c) {
  return {{"forward_flops", c.forward_flops},
          {"input_grad_flops", c.input_grad_flops},
          {"weight_grad_flops", c.weight_grad_flops},
          {"other_flops", c.other_flops},
          {"train_flops", c.train_flops()},
          {"samples", c.samples},
          {"parameters_updated", c.parameters_updated},
          {"train_seconds", c.train_seconds},
          {"round_seconds", c.round_seconds},
          {"peak_rss_bytes", c.peak_rss_bytes}};
}

json round_json(const RoundRecord& r) {
  return {{"round", r.round},
          {"chunk", r.chunk},
          {"test_accuracy", r.test_accuracy},
          {"validation_accuracy", r.validation_accuracy},
          {"lambda", r.lambda},
          {"compute", compute_json(r.compute)},
          {"choices", r.choices}};
}

json strategy_json(const StrategyReport& s) {
  json out = {{"strategy", s.strategy},
              {"description", s.description},
              {"train_flops", s.train_flops()},
              {"train_seconds", s.train_seconds()},
              {"rounds", json::array()}};
  // A strategy that has not finished a round has no metrics yet; null says so without throwing.
  const bool measured = !s.rounds.empty();
  out["average_accuracy"] = measured ? json(s.average_accuracy()) : json(nullptr);
  out["bwt"] = measured ? json(s.bwt()) : json(nullptr);
  out["forgetting"] = measured ? json(s.forgetting()) : json(nullptr);
  out["newest_accuracy"] = measured ? json(s.newest_accuracy()) : json(nullptr);
  out["accuracy_matrix"] = s.accuracy();
  for (const RoundRecord& r : s.rounds) out["rounds"].push_back(round_json(r));
  return out;
}

// ---- CSV ----

// RFC 4180: a field with a comma, quote or line break is quoted, and its quotes doubled.
std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

// Enough acc_chunk columns for the stream's chunks and for any round that evaluated more.
size_t chunk_columns(const StreamReport& report) {
  size_t columns = report.chunks.size();
  for (const StrategyReport& s : report.strategies)
    for (const RoundRecord& r : s.rounds) columns = std::max(columns, r.test_accuracy.size());
  return columns;
}

std::string rounds_csv(const StreamReport& report) {
  const size_t columns = chunk_columns(report);
  std::string csv =
      "strategy,round,chunk,average_accuracy,validation_accuracy,lambda,forward_flops,input_grad_flops,"
      "weight_grad_flops,other_flops,train_flops,samples,parameters_updated,train_seconds,round_seconds,peak_rss_bytes";
  for (size_t j = 0; j < columns; ++j) csv += ",acc_chunk_" + std::to_string(j);
  csv += "\r\n";  // RFC 4180 line ends
  for (const StrategyReport& s : report.strategies) {
    const AccuracyMatrix r = s.accuracy();
    for (size_t i = 0; i < s.rounds.size(); ++i) {
      const RoundRecord& rec = s.rounds[i];
      const RoundCompute& c = rec.compute;
      std::vector<std::string> fields = {csv_field(s.strategy),
                                         std::to_string(rec.round),
                                         csv_field(rec.chunk),
                                         exact_number(average_accuracy(r, i)),
                                         exact_number(rec.validation_accuracy),
                                         exact_number(rec.lambda),
                                         std::to_string(c.forward_flops),
                                         std::to_string(c.input_grad_flops),
                                         std::to_string(c.weight_grad_flops),
                                         std::to_string(c.other_flops),
                                         std::to_string(c.train_flops()),
                                         std::to_string(c.samples),
                                         std::to_string(c.parameters_updated),
                                         exact_number(c.train_seconds),
                                         exact_number(c.round_seconds),
                                         std::to_string(c.peak_rss_bytes)};
      for (size_t j = 0; j < columns; ++j)
        fields.push_back(j < rec.test_accuracy.size() ? exact_number(rec.test_accuracy[j]) : "");
      for (size_t f = 0; f < fields.size(); ++f) csv += (f ? "," : "") + fields[f];
      csv += "\r\n";
    }
  }
  return csv;
}

// ---- SVG ----

std::string xml_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // Control characters other than tab and line breaks are not allowed in XML 1.0 at all.
        if (static_cast<unsigned char>(c) >= 0x20 || c == '\t' || c == '\n' || c == '\r') out += c;
    }
  }
  return out;
}

std::string px(double v) { return format("%.1f", v); }

// Tableau 10: distinct in print and for the common colour blindnesses.
const char* colour(size_t i) {
  static const char* const palette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                        "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
  return palette[i % std::size(palette)];
}

// 1, 2 or 5 times a power of ten, so that about `ticks` steps cover [0, top].
double nice_step(double top, int ticks) {
  const double raw = top / ticks;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0})
    if (m * power >= raw) return m * power;
  return 10.0 * power;
}

std::string text_element(double x, double y, const std::string& text, const char* anchor, int size,
                         const char* extra = "") {
  return "<text x=\"" + px(x) + "\" y=\"" + px(y) + "\" text-anchor=\"" + anchor + "\" font-size=\"" +
         std::to_string(size) + "\"" + extra + ">" + xml_escape(text) + "</text>\n";
}

std::string line_element(double x1, double y1, double x2, double y2, const char* stroke, double width) {
  return "<line x1=\"" + px(x1) + "\" y1=\"" + px(y1) + "\" x2=\"" + px(x2) + "\" y2=\"" + px(y2) +
         "\" stroke=\"" + stroke + "\" stroke-width=\"" + px(width) + "\"/>\n";
}

// A plot area; both panels share the x layout (one band per round) so a round lines up across them.
struct Panel {
  double left, top, width, height;
  size_t rounds;
  double band() const { return width / static_cast<double>(std::max<size_t>(rounds, 1)); }
  double x_of(size_t round) const { return left + (static_cast<double>(round) + 0.5) * band(); }
  double y_of(double value, double y_max) const { return top + height * (1.0 - std::clamp(value / y_max, 0.0, 1.0)); }
  double bottom() const { return top + height; }
};

// Title, grid, y ticks, x ticks (every round, or every k-th when they would crowd) and the frame.
std::string panel_axes(const Panel& p, const std::string& title, double y_max, double y_step,
                       std::string (*y_label)(double)) {
  std::string svg = text_element(p.left, p.top - 10, title, "start", 14, " font-weight=\"bold\"");
  for (double v = 0.0; v <= y_max * (1 + 1e-9); v += y_step) {
    const double y = p.y_of(v, y_max);
    svg += line_element(p.left, y, p.left + p.width, y, "#e0e0e0", 1);
    svg += text_element(p.left - 6, y + 4, y_label(v), "end", 11);
  }
  const size_t every = std::max<size_t>(1, (p.rounds + 19) / 20);
  for (size_t i = 0; i < p.rounds; i += every) {
    svg += line_element(p.x_of(i), p.bottom(), p.x_of(i), p.bottom() + 4, "#333333", 1);
    svg += text_element(p.x_of(i), p.bottom() + 16, std::to_string(i), "middle", 11);
  }
  svg += text_element(p.left + p.width / 2, p.bottom() + 32, "round", "middle", 12);
  svg += "<rect x=\"" + px(p.left) + "\" y=\"" + px(p.top) + "\" width=\"" + px(p.width) + "\" height=\"" +
         px(p.height) + "\" fill=\"none\" stroke=\"#333333\"/>\n";
  return svg;
}

std::string polyline(const std::vector<std::pair<double, double>>& points, const char* stroke, double width,
                     const char* extra = "") {
  std::string coords;
  for (const auto& [x, y] : points) coords += (coords.empty() ? "" : " ") + px(x) + "," + px(y);
  return "<polyline points=\"" + coords + "\" fill=\"none\" stroke=\"" + stroke + "\" stroke-width=\"" + px(width) +
         "\"" + extra + "/>\n";
}

std::string report_svg(const StreamReport& report) {
  const double width = 1100, height = 760, legend_x = 850;
  size_t rounds = 0;
  int64_t max_flops = 0;
  for (const StrategyReport& s : report.strategies) {
    rounds = std::max(rounds, s.rounds.size());
    for (const RoundRecord& r : s.rounds) max_flops = std::max(max_flops, r.compute.train_flops());
  }
  const Panel acc_panel{80, 90, 740, 260, rounds};
  const Panel flop_panel{80, 440, 740, 260, rounds};

  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + px(width) + "\" height=\"" + px(height) +
                    "\" viewBox=\"0 0 " + px(width) + " " + px(height) + "\" font-family=\"sans-serif\">\n";
  svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  svg += text_element(width / 2, 32,
                      "scenario " + report.scenario + " · data " + report.data + " · model " + report.model +
                          " · seed " + std::to_string(report.seed),
                      "middle", 18, " font-weight=\"bold\"");
  if (!report.device.empty()) svg += text_element(width / 2, 54, "device " + report.device, "middle", 12);

  // Top panel: ACC after each round per strategy; with one strategy, each chunk's own curve from
  // the round it arrived, which shows where the forgetting happens.
  svg += panel_axes(acc_panel, "average accuracy (test) per round", 1.0, 0.2,
                    [](double v) { return format("%.0f%%", 100.0 * v); });
  const bool per_chunk = report.strategies.size() == 1;
  if (per_chunk) {
    const AccuracyMatrix r = report.strategies.front().accuracy();
    const size_t columns = r.empty() ? 0 : r.front().size();
    for (size_t j = 0; j < columns && j < r.size(); ++j) {
      std::vector<std::pair<double, double>> points;
      for (size_t i = j; i < r.size(); ++i)
        if (std::isfinite(r[i][j])) points.emplace_back(acc_panel.x_of(i), acc_panel.y_of(r[i][j], 1.0));
      svg += polyline(points, colour(j + 1), 1.0, " stroke-opacity=\"0.7\"");
      // A dot where the chunk was learned; the newest chunk's curve is only this point.
      if (!points.empty())
        svg += "<circle cx=\"" + px(points.front().first) + "\" cy=\"" + px(points.front().second) +
               "\" r=\"2\" fill=\"" + colour(j + 1) + "\"/>\n";
    }
  }
  for (size_t k = 0; k < report.strategies.size(); ++k) {
    const StrategyReport& s = report.strategies[k];
    if (s.rounds.empty()) continue;
    const AccuracyMatrix r = s.accuracy();
    std::vector<std::pair<double, double>> points;
    for (size_t i = 0; i < r.size(); ++i) {
      const double acc = average_accuracy(r, i);
      if (std::isfinite(acc)) points.emplace_back(acc_panel.x_of(i), acc_panel.y_of(acc, 1.0));
    }
    svg += polyline(points, colour(k), 2.5);
    // Markers too, so a single round still shows.
    for (const auto& [x, y] : points)
      svg += "<circle cx=\"" + px(x) + "\" cy=\"" + px(y) + "\" r=\"3\" fill=\"" + colour(k) + "\"/>\n";
  }

  // Bottom panel: one bar per strategy in each round's band.
  const double flop_top = max_flops > 0 ? static_cast<double>(max_flops) : 1.0;
  const double flop_step = nice_step(flop_top, 5);
  const double flop_max = std::ceil(flop_top / flop_step) * flop_step;
  svg += panel_axes(flop_panel, "training FLOPs per round", flop_max, flop_step,
                    [](double v) { return count_with_suffix(v); });
  const size_t groups = std::max<size_t>(report.strategies.size(), 1);
  const double bar = 0.8 * flop_panel.band() / static_cast<double>(groups);
  for (size_t k = 0; k < report.strategies.size(); ++k) {
    const StrategyReport& s = report.strategies[k];
    for (size_t i = 0; i < s.rounds.size(); ++i) {
      const double flops = static_cast<double>(s.rounds[i].compute.train_flops());
      const double x = flop_panel.x_of(i) - 0.4 * flop_panel.band() + bar * static_cast<double>(k);
      const double y = flop_panel.y_of(flops, flop_max);
      svg += "<rect x=\"" + px(x) + "\" y=\"" + px(y) + "\" width=\"" + px(bar) + "\" height=\"" +
             px(flop_panel.bottom() - y) + "\" fill=\"" + colour(k) + "\"/>\n";
    }
  }

  // Legend: strategies (thick), then the chunk curves when they are drawn (thin).
  double y = acc_panel.top;
  svg += text_element(legend_x, y, "strategies", "start", 13, " font-weight=\"bold\"");
  for (size_t k = 0; k < report.strategies.size(); ++k) {
    y += 20;
    svg += line_element(legend_x, y - 4, legend_x + 24, y - 4, colour(k), 3);
    svg += text_element(legend_x + 30, y, report.strategies[k].strategy, "start", 12);
  }
  if (per_chunk) {
    const AccuracyMatrix r = report.strategies.front().accuracy();
    y += 30;
    svg += text_element(legend_x, y, "chunks (test accuracy)", "start", 13, " font-weight=\"bold\"");
    for (size_t j = 0; j < r.size() && y < height - 20; ++j) {
      y += 18;
      const std::string name = j < report.chunks.size() ? report.chunks[j] : report.strategies.front().rounds[j].chunk;
      svg += line_element(legend_x, y - 4, legend_x + 24, y - 4, colour(j + 1), 1);
      svg += text_element(legend_x + 30, y, std::to_string(j) + ": " + name, "start", 11);
    }
  }
  svg += "</svg>\n";
  return svg;
}

// ---- text tables ----

// Columns as wide as their widest cell; width counts UTF-8 characters (λ is one column, two bytes).
size_t display_width(const std::string& text) {
  return static_cast<size_t>(std::count_if(text.begin(), text.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

std::string render_table(const std::vector<std::string>& headers, const std::vector<std::vector<std::string>>& rows,
                         const std::vector<bool>& left_aligned) {
  std::vector<size_t> widths(headers.size());
  for (size_t c = 0; c < headers.size(); ++c) widths[c] = display_width(headers[c]);
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size() && c < widths.size(); ++c) widths[c] = std::max(widths[c], display_width(row[c]));
  auto render_row = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t c = 0; c < headers.size(); ++c) {
      const std::string& cell = c < cells.size() ? cells[c] : std::string();
      const std::string pad(widths[c] - display_width(cell), ' ');
      line += (c ? "  " : "") + (left_aligned[c] ? cell + pad : pad + cell);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    return line + "\n";
  };
  std::string rule;
  for (size_t c = 0; c < headers.size(); ++c) rule += (c ? "  " : "") + std::string(widths[c], '-');
  std::string table = render_row(headers) + rule + "\n";
  for (const auto& row : rows) table += render_row(row);
  return table;
}

}  // namespace

double average_accuracy(const AccuracyMatrix& r, size_t round) {
  check_matrix(r);
  if (round >= r.size())
    throw InvalidArgument("[report] round " + std::to_string(round) + " is past the last round " +
                          std::to_string(r.size() - 1));
  const auto& row = r[round];
  return std::accumulate(row.begin(), row.begin() + static_cast<std::ptrdiff_t>(round) + 1, 0.0) /
         static_cast<double>(round + 1);
}

double backward_transfer(const AccuracyMatrix& r) {
  check_matrix(r);
  const size_t last = r.size() - 1;
  if (last == 0) return 0.0;
  double sum = 0.0;
  for (size_t j = 0; j < last; ++j) sum += r[last][j] - r[j][j];
  return sum / static_cast<double>(last);
}

double forgetting(const AccuracyMatrix& r) {
  check_matrix(r);
  const size_t last = r.size() - 1;
  if (last == 0) return 0.0;
  double sum = 0.0;
  for (size_t j = 0; j < last; ++j) {
    // The best the chunk ever was between learning it and the round before the last, not just R[j][j]:
    // a later round may have improved it before it was lost.
    double best = r[j][j];
    for (size_t l = j + 1; l < last; ++l) best = std::max(best, r[l][j]);
    sum += best - r[last][j];
  }
  return sum / static_cast<double>(last);
}

AccuracyMatrix StrategyReport::accuracy() const {
  AccuracyMatrix r;
  for (const RoundRecord& rec : rounds) r.push_back(rec.test_accuracy);
  return r;
}

// The free functions are named like the members, so they are called qualified.
double StrategyReport::average_accuracy() const {
  const AccuracyMatrix r = accuracy();
  check_matrix(r);
  return nnr::average_accuracy(r, r.size() - 1);
}

double StrategyReport::bwt() const { return backward_transfer(accuracy()); }

double StrategyReport::forgetting() const { return nnr::forgetting(accuracy()); }

double StrategyReport::newest_accuracy() const {
  const AccuracyMatrix r = accuracy();
  check_matrix(r);
  return r.back()[r.size() - 1];
}

int64_t StrategyReport::train_flops() const {
  int64_t total = 0;
  for (const RoundRecord& rec : rounds)
    if (rec.round > 0) total += rec.compute.train_flops();
  return total;
}

double StrategyReport::train_seconds() const {
  double total = 0.0;
  for (const RoundRecord& rec : rounds)
    if (rec.round > 0) total += rec.compute.train_seconds;
  return total;
}

json to_json(const StreamReport& report) {
  json out = {{"scenario", report.scenario}, {"data", report.data},         {"model", report.model},
              {"device", report.device},     {"seed", report.seed},         {"chunks", report.chunks},
              {"settings", report.settings}, {"strategies", json::array()}};
  for (const StrategyReport& s : report.strategies) out["strategies"].push_back(strategy_json(s));
  if (!report.data_parallel.is_null()) out["data_parallel"] = report.data_parallel;
  return out;
}

void write_stream_report(const std::string& dir, const StreamReport& report) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir, ec))
    throw Error("[report] cannot create directory " + dir + ": " + (ec ? ec.message() : "not a directory"));
  // Render everything before writing anything, so a bad matrix leaves no partial set of files.
  const std::string files[][2] = {{"report.json", to_json(report).dump(2) + "\n"},
                                   {"rounds.csv", rounds_csv(report)},
                                   {"report.svg", report_svg(report)}};
  for (const auto& [name, text] : files)
    write_file_atomically(dir + "/" + name, {ByteSpan{text.data(), text.size()}}, "report");
}

std::string format_round_table(const StrategyReport& strategy, const std::vector<std::string>& chunks) {
  const AccuracyMatrix r = strategy.accuracy();
  size_t columns = chunks.size();
  for (const auto& row : r) columns = std::max(columns, row.size());
  std::vector<std::vector<std::string>> rows;
  for (size_t i = 0; i < strategy.rounds.size(); ++i) {
    const RoundRecord& rec = strategy.rounds[i];
    const RoundCompute& c = rec.compute;
    // R's row in 5-character cells, so the chunks line up down the rounds.
    std::string r_row;
    for (size_t j = 0; j < columns; ++j)
      r_row += (j ? " " : "") + (j < rec.test_accuracy.size() ? format("%5.1f", 100.0 * rec.test_accuracy[j]) : "    -");
    rows.push_back({std::to_string(rec.round), rec.chunk, percent(average_accuracy(r, i)),
                    i < rec.test_accuracy.size() ? percent(rec.test_accuracy[i]) : "-",
                    percent(rec.validation_accuracy), format("%.4g", rec.lambda), std::to_string(c.samples),
                    count_with_suffix(static_cast<double>(c.parameters_updated)), gflop(c.train_flops()),
                    format("%.2f", c.train_seconds), format("%.2f", c.round_seconds), r_row});
  }
  const std::string r_header = "test acc % per chunk 0.." + std::to_string(columns == 0 ? 0 : columns - 1);
  return "strategy " + strategy.strategy + (strategy.description.empty() ? "" : ": " + strategy.description) + "\n" +
         render_table({"round", "chunk", "ACC %", "newest %", "val acc %", "λ", "samples", "updated", "train GFLOP",
                       "train s", "round s", r_header},
                      rows, {false, true, false, false, false, false, false, false, false, false, false, true});
}

std::string format_summary_table(const StreamReport& report) {
  // FLOPs relative to retraining everything, the cost the method is meant to cut.
  const StrategyReport* full = nullptr;
  for (const StrategyReport& s : report.strategies)
    if (s.strategy == "full") full = &s;
  const int64_t full_flops = full ? full->train_flops() : 0;
  std::vector<std::vector<std::string>> rows;
  for (const StrategyReport& s : report.strategies) {
    const bool measured = !s.rounds.empty();
    rows.push_back({s.strategy, measured ? percent(s.average_accuracy()) : "-",
                    measured ? format("%+.2f", 100.0 * s.bwt()) : "-",
                    measured ? format("%.2f", 100.0 * s.forgetting()) : "-",
                    measured ? percent(s.newest_accuracy()) : "-", gflop(s.train_flops()),
                    full_flops > 0 ? format("%.3f", static_cast<double>(s.train_flops()) / static_cast<double>(full_flops))
                                   : "-",
                    format("%.2f", s.train_seconds())});
  }
  return render_table({"strategy", "ACC %", "BWT (pts)", "forgetting (pts)", "newest %", "train GFLOP",
                       "FLOPs / full", "train s"},
                      rows, {true, false, false, false, false, false, false, false});
}

}  // namespace nnr
