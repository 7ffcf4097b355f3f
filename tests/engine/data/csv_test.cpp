#include "engine/data/csv.h"

#include <catch2/catch.hpp>

#include "engine/core/error.h"
#include "tests/engine/data/temp_dir.h"

using nnr::test::TempDir;

TEST_CASE("csv with a header reads labels and features, header is detected", "[csv]") {
  TempDir dir;
  nnr::test::write_text(dir.file("d.csv"), "label,\"a\",b\r\n1,0.5,2\r\n\r\n0, -1e-3 ,4\r\n");
  nnr::CsvTable t = nnr::read_csv(dir.file("d.csv"));
  REQUIRE(t.column_names == std::vector<std::string>{"label", "a", "b"});
  REQUIRE(t.labels == std::vector<int32_t>{1, 0});
  REQUIRE(t.features.shape() == nnr::Shape{2, 2});
  REQUIRE(t.features.to_vector() == std::vector<float>{0.5f, 2.0f, -1e-3f, 4.0f});
}

TEST_CASE("csv without a header, label in another column, or no label at all", "[csv]") {
  TempDir dir;
  nnr::test::write_text(dir.file("d.csv"), "1,2,3\n4,5,6");  // no final newline
  nnr::CsvTable t = nnr::read_csv(dir.file("d.csv"));
  REQUIRE(t.column_names.empty());
  REQUIRE(t.labels == std::vector<int32_t>{1, 4});
  REQUIRE(t.features.to_vector() == std::vector<float>{2, 3, 5, 6});

  nnr::CsvOptions last;
  last.label_column = 2;
  t = nnr::read_csv(dir.file("d.csv"), last);
  REQUIRE(t.labels == std::vector<int32_t>{3, 6});
  REQUIRE(t.features.to_vector() == std::vector<float>{1, 2, 4, 5});

  nnr::CsvOptions none;
  none.label_column = -1;
  t = nnr::read_csv(dir.file("d.csv"), none);
  REQUIRE(t.labels.empty());
  REQUIRE(t.features.shape() == nnr::Shape{2, 3});

  nnr::CsvOptions absent;
  absent.header = nnr::CsvHeader::Absent;
  nnr::test::write_text(dir.file("h.csv"), "y,x\n1,2\n");
  REQUIRE_THROWS_WITH(nnr::read_csv(dir.file("h.csv"), absent),
                      Catch::Contains("h.csv: line 1, column 1: expected a number, got 'y'"));
}

TEST_CASE("csv errors name the file, line and column", "[csv]") {
  TempDir dir;
  const std::string p = dir.file("bad.csv");
  auto fails_with = [&](const std::string& text, const std::string& message) {
    nnr::test::write_text(p, text);
    REQUIRE_THROWS_WITH(nnr::read_csv(p), Catch::Contains("[csv] " + p + ": " + message));
  };
  fails_with("label,a,b\n1,2,3\n1,2\n", "line 3: ragged row: expected 3 columns, got 2");
  fails_with("1,2,3\n1,2,3,4\n", "line 2: ragged row: expected 3 columns, got 4");
  fails_with("label,a\n1,2\n0,abc\n", "line 3, column 2: expected a number, got 'abc'");
  fails_with("label,a\n1,\n", "line 2, column 2: expected a number, got an empty cell");
  fails_with("label,a\n1,nan\n", "line 2, column 2: expected a finite number, got 'nan'");
  fails_with("label,a\n1,1e39\n", "line 2, column 2: expected a finite number, got '1e39' (beyond float32 range)");
  fails_with("label,a\n-1,2\n", "line 2, column 1: label out of range: expected an integer in 0..65535, got '-1'");
  fails_with("label,a\n1.5,2\n", "line 2, column 1: label out of range: expected an integer in 0..65535, got '1.5'");
  fails_with("", "no data rows (empty file)");
  fails_with("label,a\n", "no data rows after the header");
  fails_with("1\n2\n", "line 1: expected a label column and at least one feature column, got 1 column(s)");

  nnr::CsvOptions o;
  o.num_classes = 3;
  nnr::test::write_text(p, "0,1\n3,1\n");
  REQUIRE_THROWS_WITH(nnr::read_csv(p, o),
                      Catch::Contains("line 2, column 1: label out of range: expected an integer in 0..2"));
  o.label_column = 5;
  REQUIRE_THROWS_AS(nnr::read_csv(p, o), nnr::InvalidArgument);
  REQUIRE_THROWS_WITH(nnr::read_csv(dir.file("missing.csv")), Catch::Contains("missing.csv: cannot open"));
}
