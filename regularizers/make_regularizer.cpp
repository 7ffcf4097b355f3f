#include <cmath>

#include "engine/core/error.h"
#include "regularizers/ewc.h"
#include "regularizers/l2.h"
#include "regularizers/mas.h"
#include "regularizers/regularizer.h"
#include "regularizers/si.h"
#include "regularizers/sni.h"

namespace nnr {
namespace {

std::string joined_names() {
  std::string s;
  for (const std::string& n : regularizer_names()) s += (s.empty() ? "" : ", ") + n;
  return s;
}

float gamma_or(const RegularizerOptions& o, float fallback) { return o.gamma < 0.0f ? fallback : o.gamma; }

std::unique_ptr<Regularizer> make_synapse(const std::string& name, const RegularizerOptions& o) {
  if (name == "ewc" || name == "online-ewc") {
    EwcOptions e{o.sampled_fisher, o.samples, o.batch_size, o.seed, o.collective};
    if (name == "ewc") return std::make_unique<Ewc>(e, gamma_or(o, 1.0f), AnchorRule::WeightedMean, "ewc");
    return std::make_unique<Ewc>(e, gamma_or(o, 0.9f), AnchorRule::Latest, "online-ewc");
  }
  if (name == "mas") return std::make_unique<Mas>(MasOptions{o.samples, o.batch_size, o.seed, o.collective}, gamma_or(o, 1.0f));
  if (name == "si") return std::make_unique<Si>(o.si_damping, gamma_or(o, 1.0f));
  return nullptr;
}

}  // namespace

const std::vector<std::string>& regularizer_names() {
  static const std::vector<std::string> names{"l2", "ewc", "online-ewc", "si", "mas", "sni"};
  return names;
}

std::unique_ptr<Regularizer> make_regularizer(const std::string& name, const RegularizerOptions& o) {
  if (o.samples < 0 || o.batch_size < 1)
    throw InvalidArgument("[regularizer] estimation needs samples >= 0 and batch size >= 1, got " +
                          std::to_string(o.samples) + " and " + std::to_string(o.batch_size));
  if (name == "l2") {
    if (o.gamma >= 0.0f && o.gamma != 0.0f)
      throw InvalidArgument("[regularizer] l2 keeps Ω = 1; it takes no decay gamma");
    return std::make_unique<L2>();
  }
  if (auto synapse = make_synapse(name, o)) return synapse;
  if (name == "sni") {
    std::unique_ptr<Regularizer> synapse;
    if (o.synapse_weight > 0.0f) {
      synapse = make_synapse(o.synapse, o);
      if (!synapse)
        throw InvalidArgument("[regularizer] sni: unknown synapse importance '" + o.synapse +
                              "' (valid: ewc, online-ewc, mas, si)");
    }
    SniOptions s;
    s.synapse_weight = o.synapse_weight;
    s.neuron_out_weight = o.neuron_out_weight;
    s.neuron_in_weight = o.neuron_in_weight;
    s.neuron = NeuronImportanceOptions{o.samples, o.batch_size, o.seed + 1, OutputGradient::OutputNorm, o.collective};
    return std::make_unique<Sni>(std::move(synapse), s, gamma_or(o, 1.0f));
  }
  throw InvalidArgument("[regularizer] unknown regularizer '" + name + "' (valid: " + joined_names() + ")");
}

}  // namespace nnr
