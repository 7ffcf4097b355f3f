#pragma once
// The fast path of nnr serve's predict requests and answers (server.cpp): a batch-1 request of a
// 784-input model is ~5 KB of JSON numbers, and building nlohmann's DOM for it cost ~5 forward
// passes of mlp:784-256-256-10. These functions read and write the one common shape directly:
// std::from_chars / std::to_chars over the bytes, no DOM.
//
// The parser accepts only the plain shape and answers "not mine" (0) for anything else: the
// server then parses with nlohmann as before, so every error message (malformed JSON, wrong
// shape, non-numeric or non-finite values, too many inputs) comes from one place, unchanged.
// Header-only (standard library only): bench/bench_serve_predict times the same code in-process.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace nnr::serve {

// Parses a body that is exactly {"input": [v, ...]} or {"inputs": [[v, ...], ...]} (one key, no
// escapes in it; JSON whitespace between any tokens), where every row holds `numel` JSON numbers
// and there are 1..max_rows rows, each value finite and at most 3.4e38 in magnitude. Writes the
// values row after row into `out` (resized to rows * numel) and returns the row count. Each value
// is the double nearest the number, then rounded to float (bit for bit what nlohmann's parse,
// get<double>() and static_cast<float> give, -0 written as an integer included). Returns 0, with
// `out` unspecified, for any other body (valid JSON or not).
inline int64_t parse_inputs_fast(std::string_view body, int64_t numel, int64_t max_rows, std::vector<float>& out);

// The predict answer {"labels": [...], "probabilities": [[...], ...], "version": v} (compact, keys
// in nlohmann's order) for probabilities [n, k] (row-major), the label of a row being the index of
// its first maximum. Each probability is written as the shortest decimal that reads back as the
// same double (the float widened to double, as nlohmann writes a float), with ".0" after an
// integer, and null when not finite: json::parse of it equals json::parse of nlohmann's dump.
inline std::string prediction_json(int64_t version, const float* probs, int64_t n, int64_t k);

// ---- implementation ----

namespace fast_json_detail {

// A cursor over the body; every reader returns false at the first byte it does not accept.
struct Reader {
  const char* p;
  const char* end;

  void skip_ws() {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) ++p;
  }
  bool take(char c) {
    skip_ws();
    if (p == end || *p != c) return false;
    ++p;
    return true;
  }
  static bool digit(char c) { return c >= '0' && c <= '9'; }
  // Digits, accumulated into `mantissa` while it has at most 19 of them (`count` counts them all).
  void digits(uint64_t& mantissa, int& count) {
    for (; p < end && digit(*p); ++p, ++count)
      if (count < 19) mantissa = mantissa * 10 + static_cast<uint64_t>(*p - '0');
  }

  // One JSON number (RFC 8259: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?), as a float.
  bool number(float& value) {
    skip_ws();
    const char* start = p;
    const bool negative = p < end && *p == '-';
    if (negative) ++p;
    if (p == end) return false;
    uint64_t mantissa = 0;  // the significant digits, as an integer
    int count = 0, fraction = 0;
    if (*p == '0') ++p;
    else if (*p >= '1' && *p <= '9') digits(mantissa, count);
    else return false;
    bool integer = true;
    if (p < end && *p == '.') {
      ++p;
      if (p == end || !digit(*p)) return false;
      const int before = count;
      if (count == 0)  // 0.000ddd: leading zeros are not significant
        for (; p < end && *p == '0'; ++p) ++fraction;
      digits(mantissa, count);
      fraction += count - before;
      integer = false;
    }
    int exponent = 0;
    bool exponent_small = true;
    if (p < end && (*p == 'e' || *p == 'E')) {
      ++p;
      const bool minus = p < end && *p == '-';
      if (p < end && (*p == '+' || *p == '-')) ++p;
      if (p == end || !digit(*p)) return false;
      for (; p < end && digit(*p); ++p) {
        exponent = exponent * 10 + (*p - '0');
        if (exponent > 1000) exponent_small = false, exponent = 1000;
      }
      if (minus) exponent = -exponent;
      integer = false;
    }
    double d = 0.0;
    // Clinger's fast path: a mantissa below 2^53 and a power of ten up to 1e22 are exact doubles,
    // so one multiplication or division rounds once, to the nearest double, as strtod does.
    static constexpr double kPow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    const int scale = exponent - fraction;
    if (count <= 19 && mantissa <= (uint64_t{1} << 53) && exponent_small && scale >= -22 && scale <= 22) {
      d = static_cast<double>(mantissa);
      d = scale >= 0 ? d * kPow10[scale] : d / kPow10[-scale];
      if (negative) d = -d;
    } else {
      const std::from_chars_result r = std::from_chars(start, p, d);
      // Out of double's range (overflow, or underflow that strtod would round): nlohmann decides.
      if (r.ec != std::errc() || r.ptr != p) return false;
    }
    if (!(std::fabs(d) <= 3.4e38)) return false;  // the server's "not finite" error
    // nlohmann reads "-0" as the integer 0, which converts to +0.0.
    if (integer && d == 0.0) d = 0.0;
    value = static_cast<float>(d);
    return true;
  }

  // [v, ...] of exactly numel numbers, appended to out.
  bool row(int64_t numel, std::vector<float>& out) {
    if (!take('[')) return false;
    const size_t first = out.size();
    out.resize(first + static_cast<size_t>(numel));
    float* dst = out.data() + first;
    for (int64_t j = 0; j < numel; ++j) {
      if (j > 0 && !take(',')) return false;
      if (!number(dst[j])) return false;
    }
    return take(']');
  }
};

inline void append_double(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  char buf[40];
  const std::to_chars_result r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round trip
  out.append(buf, r.ptr);
  if (std::find_if(buf, r.ptr, [](char c) { return c == '.' || c == 'e'; }) == r.ptr) out += ".0";
}

inline void append_integer(std::string& out, int64_t v) {
  char buf[24];
  const std::to_chars_result r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

}  // namespace fast_json_detail

inline int64_t parse_inputs_fast(std::string_view body, int64_t numel, int64_t max_rows, std::vector<float>& out) {
  if (numel < 1 || max_rows < 1) return 0;
  fast_json_detail::Reader in{body.data(), body.data() + body.size()};
  out.clear();
  if (!in.take('{') || !in.take('"')) return 0;
  constexpr std::string_view kInput = "input";
  if (static_cast<size_t>(in.end - in.p) < kInput.size() || std::memcmp(in.p, kInput.data(), kInput.size()) != 0)
    return 0;
  in.p += kInput.size();
  const bool many = in.p < in.end && *in.p == 's';
  if (many) ++in.p;
  if (in.p == in.end || *in.p++ != '"' || !in.take(':')) return 0;
  int64_t rows = 0;
  if (!many) {
    if (!in.row(numel, out)) return 0;
    rows = 1;
  } else {
    if (!in.take('[')) return 0;
    do {
      if (rows == max_rows || !in.row(numel, out)) return 0;
      ++rows;
    } while (in.take(','));
    if (!in.take(']')) return 0;
  }
  if (!in.take('}')) return 0;
  in.skip_ws();
  return in.p == in.end ? rows : 0;
}

inline std::string prediction_json(int64_t version, const float* probs, int64_t n, int64_t k) {
  std::string out;
  out.reserve(static_cast<size_t>(64 + n * (8 + k * 24)));
  out += "{\"labels\":[";
  for (int64_t i = 0; i < n; ++i) {
    if (i) out += ',';
    const float* row = probs + i * k;
    fast_json_detail::append_integer(out, std::max_element(row, row + k) - row);
  }
  out += "],\"probabilities\":[";
  for (int64_t i = 0; i < n; ++i) {
    out += i ? ",[" : "[";
    for (int64_t j = 0; j < k; ++j) {
      if (j) out += ',';
      fast_json_detail::append_double(out, static_cast<double>(probs[i * k + j]));
    }
    out += ']';
  }
  out += "],\"version\":";
  fast_json_detail::append_integer(out, version);
  out += '}';
  return out;
}

}  // namespace nnr::serve
