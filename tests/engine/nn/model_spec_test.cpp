#include <catch2/catch.hpp>

#include "engine/core/error.h"
#include "engine/nn/model_spec.h"

using namespace nnr;

TEST_CASE("mlp spec builds PyTorch nn.Sequential names and shapes", "[spec]") {
  Sequential m = build_model("mlp:784-256-256-10", 0);
  REQUIRE(m.size() == 5);
  REQUIRE(m.find_parameter("0.weight")->value.shape() == Shape{256, 784});
  REQUIRE(m.find_parameter("2.weight")->value.shape() == Shape{256, 256});
  REQUIRE(m.find_parameter("4.bias")->value.shape() == Shape{10});
  REQUIRE(m.parameter_count() == 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10);
  REQUIRE(m.output_shape({8, 1, 28, 28}) == Shape{8, 10});
  REQUIRE(model_input_shape("mlp:784-256-10") == Shape{784});
  Sequential d = build_model("mlp:4-3-2:dropout=0.5", 0);
  REQUIRE(d.describe().find("Dropout(p=0.5)") != std::string::npos);
}

TEST_CASE("cnn spec builds the documented layers", "[spec]") {
  Sequential m = build_model("cnn:1x28x28-c32-p-c64-p-f128-10", 0);
  REQUIRE(m.describe() ==
          "  (0): Conv2d(1, 32, kernel_size=3, stride=1, padding=1)\n"
          "  (1): ReLU()\n"
          "  (2): MaxPool2d(kernel_size=2, stride=2)\n"
          "  (3): Conv2d(32, 64, kernel_size=3, stride=1, padding=1)\n"
          "  (4): ReLU()\n"
          "  (5): MaxPool2d(kernel_size=2, stride=2)\n"
          "  (6): Flatten()\n"
          "  (7): Linear(3136, 128)\n"
          "  (8): ReLU()\n"
          "  (9): Linear(128, 10)\n");
  REQUIRE(m.find_parameter("3.weight")->value.shape() == Shape{64, 32, 3, 3});
  REQUIRE(model_input_shape("cnn:3x9x7-c4k5s2-10") == Shape{3, 9, 7});
}

TEST_CASE("same seed, same weights, another seed, other weights", "[spec]") {
  Sequential a = build_model("mlp:5-4-3", 7), b = build_model("mlp:5-4-3", 7), c = build_model("mlp:5-4-3", 8);
  REQUIRE(a.find_parameter("0.weight")->value.to_vector() == b.find_parameter("0.weight")->value.to_vector());
  REQUIRE(a.find_parameter("0.weight")->value.to_vector() != c.find_parameter("0.weight")->value.to_vector());
}

TEST_CASE("bad specs name what is wrong", "[spec]") {
  REQUIRE_THROWS_WITH(build_model("mlp784-10", 0), Catch::Contains("expected 'mlp:...' or 'cnn:...'"));
  REQUIRE_THROWS_WITH(build_model("rnn:3-4", 0), Catch::Contains("unknown model kind 'rnn'"));
  REQUIRE_THROWS_WITH(build_model("mlp:784-x-10", 0), Catch::Contains("width 'x' is not a positive integer"));
  REQUIRE_THROWS_WITH(build_model("mlp:784", 0), Catch::Contains("at least one layer"));
  REQUIRE_THROWS_WITH(build_model("mlp:4-2:dropout=1.5", 0), Catch::Contains("dropout rate '1.5'"));
  REQUIRE_THROWS_WITH(build_model("cnn:1x28-c8-10", 0), Catch::Contains("must be CxHxW"));
  REQUIRE_THROWS_WITH(build_model("cnn:1x4x4-p-p-p-10", 0), Catch::Contains("larger than input"));
  REQUIRE_THROWS_WITH(build_model("cnn:1x8x8-q3-10", 0), Catch::Contains("unknown item 'q3'"));
  REQUIRE_THROWS_AS(build_model("cnn:1x8x8-c0-10", 0), InvalidArgument);
}
