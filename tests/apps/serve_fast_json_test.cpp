// nnr serve's fast predict parser and answer writer (apps/serve/fast_json.h) against nlohmann:
// on many random bodies (every number form JSON allows, random whitespace, awkward lengths) the
// parser gives bit for bit what nlohmann's parse, get<double>() and static_cast<float> give; it
// declines (0) every body that is not the plain shape, so the server's general path answers it;
// and no mutation of a valid body makes it accept something nlohmann reads differently. The
// writer's answer parses to what nlohmann's dump of the same answer parses to.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "apps/serve/fast_json.h"

using nnr::serve::parse_inputs_fast;
using nnr::serve::prediction_json;
using json = nlohmann::json;

namespace {

uint32_t bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

// What the server's general path makes of `body`: the rows of "inputs" (or the one "input") as
// floats, or false when it would answer with an error (any reason).
bool reference_parse(const std::string& body, int64_t numel, int64_t max_rows, std::vector<float>& out) {
  out.clear();
  const json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return false;
  std::vector<const json*> rows;
  if (j.contains("inputs")) {
    const json& all = j["inputs"];
    if (!all.is_array() || all.empty() || static_cast<int64_t>(all.size()) > max_rows) return false;
    for (const json& r : all) rows.push_back(&r);
  } else if (j.contains("input")) {
    rows.push_back(&j["input"]);
  } else {
    return false;
  }
  for (const json* r : rows) {
    if (!r->is_array() || static_cast<int64_t>(r->size()) != numel) return false;
    for (const json& v : *r) {
      if (!v.is_number()) return false;
      const double d = v.get<double>();
      if (!std::isfinite(d) || std::fabs(d) > 3.4e38) return false;
      out.push_back(static_cast<float>(d));
    }
  }
  return true;
}

struct Gen {
  std::mt19937_64 rng;
  explicit Gen(uint64_t seed) : rng(seed) {}
  int64_t below(int64_t n) { return static_cast<int64_t>(rng() % static_cast<uint64_t>(n)); }
  std::string digits(int n, bool lead_nonzero) {
    std::string s;
    for (int i = 0; i < n; ++i) s += static_cast<char>('0' + ((i == 0 && lead_nonzero) ? 1 + below(9) : below(10)));
    return s;
  }
  // JSON whitespace, usually none.
  std::string ws() {
    static const char kWs[] = {' ', '\t', '\n', '\r'};
    std::string s;
    if (below(3) == 0)
      for (int64_t n = 1 + below(3); n > 0; --n) s += kWs[below(4)];
    return s;
  }
  // A JSON number of one of many forms, a normal double within float's range.
  std::string number() {
    std::string s = below(3) == 0 ? "-" : "";
    switch (below(9)) {
      case 0: return s + "0";
      case 1: return s + digits(1 + static_cast<int>(below(8)), true);                    // integer
      case 2: return s + digits(19 + static_cast<int>(below(10)), true);                  // past int64 / uint64
      case 3: return s + "0." + digits(1 + static_cast<int>(below(12)), false);           // 0.xxx
      case 4: return s + digits(1 + static_cast<int>(below(4)), true) + "." + digits(1 + static_cast<int>(below(20)), false);
      case 5: {                                                                              // exponents
        std::string e = below(2) ? "e" : "E";
        const int64_t sign = below(3);
        e += sign == 0 ? "" : sign == 1 ? "+" : "-";
        const int64_t x = sign == 2 ? below(300) : below(37);  // normal doubles, within float range
        return s + digits(1, true) + (below(2) ? "." + digits(1 + static_cast<int>(below(9)), false) : "") + e +
               (below(4) == 0 ? "0" : "") + std::to_string(x);
      }
      case 6: {  // a float's own shortest and longest decimal
        std::uniform_real_distribution<float> u(-1.0f, 1.0f);
        char buf[64];
        std::snprintf(buf, sizeof buf, below(2) ? "%.9g" : "%.17g", static_cast<double>(u(rng)));
        return buf;
      }
      case 7: return s + "0.0";
      default: {  // halfway-ish decimals between two floats: the double rounding case
        const float f = std::ldexp(1.0f + static_cast<float>(below(1 << 23)) / (1 << 23), static_cast<int>(below(40)) - 20);
        const double mid = (static_cast<double>(f) + static_cast<double>(std::nextafter(f, 2.0f * f + 1.0f))) / 2.0;
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.17g", mid);
        return buf;
      }
    }
  }
  std::string row(int64_t numel) {
    std::string s = "[" + ws();
    for (int64_t j = 0; j < numel; ++j) s += (j ? ws() + "," + ws() : "") + number();
    return s + ws() + "]";
  }
  // A plain body: {"input": row} or {"inputs": [rows]}.
  std::string body(int64_t numel, int64_t rows, bool many) {
    std::string s = ws() + "{" + ws() + (many ? "\"inputs\"" : "\"input\"") + ws() + ":" + ws();
    if (!many) s += row(numel);
    else {
      s += "[" + ws();
      for (int64_t i = 0; i < rows; ++i) s += (i ? ws() + "," + ws() : "") + row(numel);
      s += ws() + "]";
    }
    return s + ws() + "}" + ws();
  }
};

// fast agrees with the reference: it declines, or accepts exactly what the reference reads.
void check_agrees(const std::string& body, int64_t numel, int64_t max_rows) {
  std::vector<float> fast, ref;
  const int64_t rows = parse_inputs_fast(body, numel, max_rows, fast);
  if (rows == 0) return;
  INFO(body.substr(0, 400));
  REQUIRE(reference_parse(body, numel, max_rows, ref));
  REQUIRE(fast.size() == static_cast<size_t>(rows * numel));
  REQUIRE(ref.size() == fast.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    INFO("value " << i);
    REQUIRE(bits(fast[i]) == bits(ref[i]));
  }
}

}  // namespace

TEST_CASE("the fast predict parser reads random plain bodies bit for bit as nlohmann does") {
  Gen g(20261130);
  const int64_t numels[] = {1, 2, 3, 7, 16, 63, 784, 1001};
  int64_t accepted = 0, values = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const int64_t numel = numels[g.below(8)];
    const bool many = g.below(2) == 1;
    const int64_t rows = many ? 1 + g.below(numel > 100 ? 3 : 6) : 1;
    const std::string body = g.body(numel, rows, many);
    INFO(body.substr(0, 400));
    std::vector<float> fast, ref;
    const bool ok = reference_parse(body, numel, 8, ref);
    REQUIRE(ok);  // every generated value is a finite number within float range
    REQUIRE(parse_inputs_fast(body, numel, 8, fast) == rows);
    REQUIRE(fast.size() == ref.size());
    size_t differs = 0;  // the first value whose bits differ (ref.size(): none)
    while (differs < ref.size() && bits(fast[differs]) == bits(ref[differs])) ++differs;
    INFO("value " << differs << ": " << (differs < ref.size() ? fast[differs] : 0.0f) << " vs "
                  << (differs < ref.size() ? ref[differs] : 0.0f));
    REQUIRE(differs == ref.size());
    ++accepted;
    values += static_cast<int64_t>(ref.size());
  }
  CHECK(accepted == 3000);
  CHECK(values > 100000);
}

TEST_CASE("the fast predict parser declines every body that is not the plain shape") {
  const std::string row3 = "[1, 2.5, -3e2]";
  const std::vector<std::string> declined = {
      "",
      "   ",
      "[1, 2, 3]",
      "{}",
      "{\"x\": [1, 2, 3]}",
      "{\"inputs\": []}",                                   // empty
      "{\"inputs\": [1, 2, 3]}",                            // flat where rows belong
      "{\"input\": [[1, 2, 3]]}",                           // nested where values belong
      "{\"input\": [1, 2]}",                                // short row
      "{\"input\": [1, 2, 3, 4]}",                          // long row
      "{\"inputs\": [[1, 2, 3], [1, 2]]}",
      "{\"inputs\": [[1,2,3],[1,2,3],[1,2,3],[1,2,3],[1,2,3]]}",  // more rows than max_rows (4)
      "{\"input\": [1, 2, \"3\"]}",                         // a string
      "{\"input\": [1, 2, true]}",
      "{\"input\": [1, 2, null]}",
      "{\"input\": [1, 2, 01]}",                            // leading zero
      "{\"input\": [1, 2, 1.]}",
      "{\"input\": [1, 2, .5]}",
      "{\"input\": [1, 2, +1]}",
      "{\"input\": [1, 2, 1e]}",
      "{\"input\": [1, 2, 1e+]}",
      "{\"input\": [1, 2, -]}",
      "{\"input\": [1, 2, NaN]}",
      "{\"input\": [1, 2, Infinity]}",
      "{\"input\": [1, 2, -Infinity]}",
      "{\"input\": [1, 2, 0x10]}",
      "{\"input\": [1, 2, 1e39]}",                          // over float's range: "not finite"
      "{\"input\": [1, 2, -3.5e38]}",
      "{\"input\": [1, 2, 1e999]}",                         // over double's range
      "{\"input\": [1, 2, 3,]}",                            // trailing comma
      "{\"input\": [1 2 3]}",
      "{\"input\": [1, 2, 3]",                              // unclosed
      "{\"input\": [1, 2, 3]} x",                           // trailing content
      "{\"input\": [1, 2, 3]}{}",
      "{\"input\": [1, 2, 3], \"x\": 1}",                   // a second key (the general path reads it)
      "{\"input\": [1, 2, 3], \"inputs\": [[1, 2, 3]]}",
      "{\"inputs\": [[1, 2, 3]], \"input\": [1, 2, 3]}",
      "{\"\\u0069nput\": [1, 2, 3]}",                       // an escape in the key
      "{\"input \": [1, 2, 3]}",
      "{\"Input\": [1, 2, 3]}",
      "{\"inputss\": [[1, 2, 3]]}",
      "{'input': [1, 2, 3]}",
      "{\"input\" [1, 2, 3]}",
      "\xEF\xBB\xBF{\"input\": [1, 2, 3]}",                 // a BOM (nlohmann skips it)
      "{\"input\": [1, 2, 3]} // comment",
      "{\"input\":\f[1, 2, 3]}",                            // not JSON whitespace
      std::string("{\"input\": [1, 2, 3]}\0", 21),
  };
  std::vector<float> out;
  for (const std::string& body : declined) {
    INFO(body);
    CHECK(parse_inputs_fast(body, 3, 4, out) == 0);
  }
  // The same shapes with good values are accepted (the table above fails for its one flaw).
  CHECK(parse_inputs_fast("{\"input\": " + row3 + "}", 3, 4, out) == 1);
  CHECK(parse_inputs_fast("{\"inputs\": [" + row3 + "," + row3 + "," + row3 + "," + row3 + "]}", 3, 4, out) == 4);
  CHECK(out.size() == 12);
  CHECK(out[2] == -300.0f);
  CHECK(parse_inputs_fast(" \t\r\n{ \"input\" : [ 3.4e38 , -3.4e38 , -0 ] } \n", 3, 4, out) == 1);
  CHECK(out[0] == 3.4e38f);
  CHECK(!std::signbit(out[2]));  // "-0" is nlohmann's integer 0
  CHECK(parse_inputs_fast("{\"input\": [-0.0, 0e5, -0E-1]}", 3, 4, out) == 1);
  CHECK(std::signbit(out[0]));

  // Every proper prefix of a plain body is declined.
  Gen g(7);
  for (int trial = 0; trial < 20; ++trial) {
    const std::string body = g.body(5, 1 + g.below(3), g.below(2) == 1);
    REQUIRE(parse_inputs_fast(body, 5, 4, out) > 0);
    for (size_t n = 0; n <= body.rfind('}'); ++n) {  // up to the closing brace, without it
      INFO(body.substr(0, n));
      CHECK(parse_inputs_fast(body.substr(0, n), 5, 4, out) == 0);
    }
  }
}

TEST_CASE("no mutation of a plain body makes the fast parser accept what nlohmann reads otherwise") {
  Gen g(99);
  const std::string alphabet = "0123456789-+.eE ,[]{}\"a\t\nsx";
  int64_t declined = 0, accepted = 0;
  for (int trial = 0; trial < 4000; ++trial) {
    const int64_t numel = 1 + g.below(6);
    std::string body = g.body(numel, 1 + g.below(3), g.below(2) == 1);
    for (int64_t edits = 1 + g.below(3); edits > 0; --edits) {
      const size_t at = static_cast<size_t>(g.below(static_cast<int64_t>(body.size())));
      switch (g.below(3)) {
        case 0: body[at] = alphabet[static_cast<size_t>(g.below(static_cast<int64_t>(alphabet.size())))]; break;
        case 1: body.erase(at, 1); break;
        default: body.insert(at, 1, alphabet[static_cast<size_t>(g.below(static_cast<int64_t>(alphabet.size())))]);
      }
    }
    std::vector<float> out;
    if (parse_inputs_fast(body, numel, 3, out) == 0) ++declined;
    else ++accepted;
    check_agrees(body, numel, 3);
  }
  CHECK(declined > 0);
  CHECK(accepted > 0);
}

TEST_CASE("the fast predict answer parses to what nlohmann's dump of it parses to") {
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  const float specials[] = {0.0f, 1.0f, 0.1f, 1e-30f, 1e-45f, std::numeric_limits<float>::min(), 0.5f, 1e-5f, 1e-4f,
                            0.99999994f, 123456.0f, 3e38f};
  for (int trial = 0; trial < 2000; ++trial) {
    const int64_t n = 1 + static_cast<int64_t>(rng() % 4), k = 1 + static_cast<int64_t>(rng() % 12);
    const int64_t version = static_cast<int64_t>(rng() % 100000);
    std::vector<float> probs(static_cast<size_t>(n * k));
    for (float& p : probs) p = rng() % 4 == 0 ? specials[rng() % 12] : std::pow(u(rng), 1.0f + static_cast<float>(rng() % 30));
    json labels = json::array(), probabilities = json::array();
    for (int64_t i = 0; i < n; ++i) {
      const float* row = probs.data() + i * k;
      labels.push_back(std::max_element(row, row + k) - row);
      probabilities.push_back(std::vector<float>(row, row + k));
    }
    const std::string want = json{{"version", version}, {"labels", labels}, {"probabilities", probabilities}}.dump();
    const std::string got = prediction_json(version, probs.data(), n, k);
    INFO(got << "\n" << want);
    REQUIRE(json::parse(got) == json::parse(want));
  }
  // Not finite: null, as nlohmann writes it (the label is still std::max_element's: the infinity).
  const float bad[] = {0.5f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()};
  CHECK(prediction_json(3, bad, 1, 3) == "{\"labels\":[2],\"probabilities\":[[0.5,null,null]],\"version\":3}");
  const float ones[] = {1.0f, 0.0f};
  CHECK(prediction_json(12, ones, 1, 2) == "{\"labels\":[0],\"probabilities\":[[1.0,0.0]],\"version\":12}");
}
