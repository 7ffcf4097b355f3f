// Writes the seed corpus of every fuzz target with nnr's own writers, so each seed is a valid
// file of its format (plus a few edge cases): make_corpus <fuzz/corpus folder>. The corpus is
// committed; rerun this only when a format changes.
#include <sys/stat.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bandits/factory.h"
#include "engine/data/file_bytes.h"
#include "engine/data/idx.h"
#include "engine/data/npy.h"
#include "engine/io/checkpoint.h"
#include "engine/nn/model_spec.h"
#include "regularizers/importance_state.h"

namespace {

std::string root;

std::string seed(const std::string& target, const std::string& name) {
  const std::string dir = root + "/" + target;
  ::mkdir(dir.c_str(), 0755);
  return dir + "/" + name;
}

void text(const std::string& target, const std::string& name, const std::string& content) {
  nnr::write_file_bytes(seed(target, name), std::vector<uint8_t>(content.begin(), content.end()), "corpus");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_corpus <fuzz/corpus folder>\n");
    return 2;
  }
  root = argv[1];
  ::mkdir(root.c_str(), 0755);

  // IDX: images [N, H, W], [N, D], labels [N], an empty file of rank 1.
  nnr::save_idx(seed("idx", "images_2x3x3.idx"), {2, 3, 3}, std::vector<uint8_t>(18, 200));
  nnr::save_idx(seed("idx", "features_2x4.idx"), {2, 4}, {0, 1, 2, 3, 252, 253, 254, 255});
  nnr::save_idx(seed("idx", "labels_5.idx"), {5}, {0, 1, 2, 9, 3});
  nnr::save_idx(seed("idx", "empty_0.idx"), {0}, {});

  // CSV: the first byte picks the options (see csv_fuzz.cpp): 0x00 label column 0, header auto, ','.
  text("csv", "header.csv", std::string(1, '\x00') + "label,x1,x2\n0,0.5,1\n1,-2e3,3.25\n");
  text("csv", "plain.csv", std::string(1, '\x00') + "2,1,2,3\r\n0,4,5,6\r\n\n");
  text("csv", "features_only_semicolon.csv", std::string(1, '\x48') + "1.5;2\n3;4e-3\n");
  text("csv", "quoted_header.csv", std::string(1, '\x05') + "\"a\",\"b\"\n7,8\n");

  // NPY: float32 features, uint8, int32/int64 labels, a scalar.
  nnr::save_npy(seed("npy", "f4_2x3.npy"), nnr::Tensor::from_vector({2, 3}, {0, 1, 2, 3.5f, -4, 5}));
  nnr::save_npy_raw(seed("npy", "u1_4.npy"), "|u1", {4}, {0, 1, 2, 255});
  nnr::save_npy_raw(seed("npy", "i4_3.npy"), "<i4", {3}, {1, 0, 0, 0, 2, 0, 0, 0, 9, 0, 0, 0});
  nnr::save_npy_raw(seed("npy", "i8_1.npy"), "<i8", {1}, {3, 0, 0, 0, 0, 0, 0, 0});
  nnr::save_npy_raw(seed("npy", "scalar.npy"), "<f4", {}, {0, 0, 128, 63});

  // Checkpoints: an nnr model (CRCs, spec), the same as a plain safetensors file, an empty one.
  nnr::Sequential mlp = nnr::build_model("mlp:3-4-2", 7);
  std::vector<std::pair<std::string, const nnr::Tensor*>> tensors;
  for (nnr::Parameter* p : mlp.parameters()) tensors.emplace_back(p->name, &p->value);
  nnr::save_checkpoint(seed("checkpoint", "mlp_3_4_2.safetensors"), tensors, {{nnr::kMetaModelSpec, mlp.spec()}});
  const nnr::Tensor small = nnr::Tensor::from_vector({2, 2}, {1, 2, 3, 4});
  nnr::save_checkpoint(seed("checkpoint", "one_tensor.safetensors"), {{"w", &small}}, {});
  const std::string plain_header = R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},)"
                                   R"("b":{"dtype":"BF16","shape":[1,1],"data_offsets":[4,6]},)"
                                   R"("c":{"dtype":"F64","shape":[],"data_offsets":[6,14]}})";
  std::string plain(8, '\0');
  plain[0] = static_cast<char>(plain_header.size());
  plain += plain_header;
  const unsigned char values[14] = {0, 60, 0, 64, 128, 63, 0, 0, 0, 0, 0, 0, 240, 63};
  plain.append(reinterpret_cast<const char*>(values), sizeof values);
  text("checkpoint", "plain_f16_bf16_f64.safetensors", plain);
  text("checkpoint", "empty.safetensors", std::string("\x02\0\0\0\0\0\0\0{}", 10));

  // Importance state: Ω and θ* for the fuzz target's mlp:3-4-2.
  nnr::Sequential model = nnr::build_model("mlp:3-4-2", 1);
  for (nnr::Parameter* p : model.parameters()) {
    p->omega = nnr::Tensor(p->value.shape());
    p->anchor = p->value.clone();
  }
  std::vector<std::pair<std::string, const nnr::Tensor*>> state;
  for (nnr::Parameter* p : model.parameters()) state.emplace_back(p->name, &p->value);
  for (const auto& named : nnr::importance_tensors(model)) state.push_back(named);
  nnr::save_checkpoint(seed("importance_state", "mlp_3_4_2_state.safetensors"), state, {});
  nnr::save_checkpoint(seed("importance_state", "no_importance.safetensors"), tensors, {});

  // Model specs.
  text("model_spec", "mlp", "mlp:784-256-10");
  text("model_spec", "mlp_dropout", "mlp:4-8-8-3:dropout=0.25");
  text("model_spec", "cnn", "cnn:1x28x28-c32-p-c64-p-f128-10");
  text("model_spec", "cnn_kernel_stride", "cnn:3x8x8-c4k5s2-p3-d0.5-f6-2");

  // Bandit states: each policy after a few rounds, and the normalised wrapper.
  int n = 0;
  for (const std::string name : {"ucb1", "thompson", "exp3m", "sliding-window-ucb", "norm:discounted-ucb",
                                 "epsilon-greedy", "kl-ucb", "exp3"}) {
    auto policy = nnr::bandits::make_policy(name, {{"seed", 3}});
    for (nnr::bandits::ArmId a = 0; a < 3; ++a) policy->add_arm(a * 2);
    for (int round = 0; round < 4; ++round) {
      if (policy->multiple_play()) {
        const auto arms = policy->select_k(2);
        policy->update_round({{arms[0], 0.25}, {arms[1], 1.0}});
      } else {
        policy->update(policy->select(), round % 2 ? 0.75 : 0.0);
      }
    }
    text("bandit_state", std::to_string(n++) + "_" + name.substr(name.find(':') + 1) + ".json",
         policy->save_state().dump());
  }
  return 0;
}
