// Ω and θ* travel with the model in its own checkpoint under nnr.omega. / nnr.anchor.
#include <catch2/catch.hpp>

#include "apps/trainer/continual_tasks.h"
#include "apps/trainer/model_file.h"
#include "engine/nn/model_spec.h"
#include "regularizers/importance_state.h"
#include "tests/engine/data/temp_dir.h"
#include "test_helpers.h"

using namespace nnr;

TEST_CASE("Ω and θ* round-trip through the model file under their own prefixes", "[regularizers][state]") {
  test::TempDir dir;
  Sequential model = build_model("mlp:4-3-2", 1);
  RegularizerOptions o;
  o.samples = 0;
  make_regularizer("ewc", o)->consolidate(model, test::random_dataset(16, {4}, 2, 3));
  model.parameters()[0]->value[0] += 1.0f;  // θ ≠ θ* in the file
  save_model(dir.file("m.safetensors"), model, importance_extras(model));

  LoadedModel loaded = load_model(dir.file("m.safetensors"));  // a plain load skips the nnr.* tensors
  std::vector<std::string> names;
  for (const NamedTensor& t : loaded.file.tensors) names.push_back(t.name);
  for (const char* n : {"0.weight", "0.bias", "2.weight", "2.bias", "nnr.omega.0.weight", "nnr.anchor.0.weight",
                        "nnr.omega.2.bias", "nnr.anchor.2.bias"})
    REQUIRE(std::find(names.begin(), names.end(), n) != names.end());
  REQUIRE(names.size() == 12);

  REQUIRE(restore_importance(loaded.model, loaded.file) == 4);
  const std::vector<Parameter*> a = model.parameters(), b = loaded.model.parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    REQUIRE(b[i]->value.to_vector() == a[i]->value.to_vector());
    REQUIRE(b[i]->omega.to_vector() == a[i]->omega.to_vector());
    REQUIRE(b[i]->anchor.to_vector() == a[i]->anchor.to_vector());
  }
  REQUIRE(b[0]->anchor[0] != b[0]->value[0]);
}

TEST_CASE("a model file without importance restores no penalty", "[regularizers][state]") {
  test::TempDir dir;
  Sequential model = build_model("mlp:4-2", 1);
  save_model(dir.file("plain.safetensors"), model);
  LoadedModel loaded = load_model(dir.file("plain.safetensors"));
  loaded.model.parameters()[0]->anchor = Tensor({2, 4});  // stale state is cleared
  REQUIRE(restore_importance(loaded.model, loaded.file) == 0);
  for (Parameter* p : loaded.model.parameters()) {
    REQUIRE_FALSE(p->omega.defined());
    REQUIRE_FALSE(p->anchor.defined());
  }
}

TEST_CASE("an Ω without its θ* is refused, naming both tensors", "[regularizers][state]") {
  test::TempDir dir;
  Sequential model = build_model("mlp:4-2", 1);
  Tensor omega({2, 4});
  save_model(dir.file("half.safetensors"), model, {ExtraTensor{"nnr.omega.0.weight", &omega}});
  LoadedModel loaded = load_model(dir.file("half.safetensors"));
  REQUIRE_THROWS_WITH(restore_importance(loaded.model, loaded.file),
                      Catch::StartsWith("[regularizer]") && Catch::Contains("nnr.anchor.0.weight"));
}
