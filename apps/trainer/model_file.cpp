#include "apps/trainer/model_file.h"

#include <cstring>
#include <set>

#include "engine/core/error.h"
#include "engine/nn/model_spec.h"

namespace nnr {

void save_model(const std::string& path, Sequential& model, const std::vector<ExtraTensor>& extra,
                std::map<std::string, std::string> metadata) {
  std::vector<std::pair<std::string, const Tensor*>> tensors;
  for (Parameter* p : model.parameters()) tensors.emplace_back(p->name, &p->value);
  for (const ExtraTensor& e : extra) tensors.emplace_back(e.name, e.value);
  metadata[kMetaModelSpec] = model.spec();
  save_checkpoint(path, tensors, metadata);
}

void load_parameters(Sequential& model, const Checkpoint& file) {
  std::set<std::string> used;
  for (Parameter* p : model.parameters()) {
    const Tensor& t = file.require(p->name, p->value.shape());
    std::memcpy(p->value.data(), t.data(), t.bytes());
    used.insert(p->name);
  }
  for (const NamedTensor& t : file.tensors)
    if (!used.count(t.name) && t.name.rfind("nnr.", 0) != 0)
      throw InvalidArgument("[model] " + file.path + ": tensor '" + t.name + "' is not a parameter of model '" +
                            model.spec() + "' (wrong --model-spec?)");
}

LoadedModel load_model(const std::string& path, const std::string& spec) {
  Checkpoint file = load_checkpoint(path);
  auto it = file.metadata.find(kMetaModelSpec);
  std::string chosen = spec;
  if (chosen.empty()) {
    if (it == file.metadata.end())
      throw InvalidArgument("[model] " + path + " records no model spec (not written by nnr): give --model-spec");
    chosen = it->second;
  } else if (it != file.metadata.end() && it->second != spec) {
    throw InvalidArgument("[model] " + path + " holds model '" + it->second + "', but --model-spec says '" + spec +
                          "'");
  }
  LoadedModel loaded{build_model(chosen, 0), std::move(file)};
  load_parameters(loaded.model, loaded.file);
  return loaded;
}

}  // namespace nnr
