#pragma once
// A model on disk: its parameters as a safetensors checkpoint (PyTorch state_dict names) with
// the model spec in the metadata, plus optional extra tensors (the method's state that travels
// with a served model, e.g. "nnr.omega.0.weight") under their own name prefixes.
#include <map>
#include <string>
#include <vector>

#include "engine/io/checkpoint.h"
#include "engine/nn/sequential.h"

namespace nnr {

struct ExtraTensor {
  std::string name;  // must not collide with a parameter name
  const Tensor* value;
};

// Writes atomically (see save_checkpoint): a failed save leaves any previous file intact.
void save_model(const std::string& path, Sequential& model, const std::vector<ExtraTensor>& extra = {},
                std::map<std::string, std::string> metadata = {});

struct LoadedModel {
  Sequential model;
  Checkpoint file;  // the whole checkpoint (extra tensors and metadata included)
};

// Builds the model named by the file's nnr.model_spec, or by `spec` when given (required for
// files written without nnr metadata, e.g. by PyTorch; when both exist they must agree), and
// loads every parameter. Errors name the file and the missing or mis-shaped tensor.
LoadedModel load_model(const std::string& path, const std::string& spec = "");

// Copies every parameter of `model` from `file` (exact names and shapes; the file may hold
// more tensors only under the "nnr." prefix).
void load_parameters(Sequential& model, const Checkpoint& file);

}  // namespace nnr
