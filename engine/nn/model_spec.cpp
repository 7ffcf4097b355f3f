#include "engine/nn/model_spec.h"

#include <cstdlib>
#include <memory>
#include <vector>

#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "engine/nn/conv2d.h"
#include "engine/nn/linear.h"
#include "engine/nn/shape_layers.h"

namespace nnr {
namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t end = s.find(sep, start);
    parts.push_back(s.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) return parts;
    start = end + 1;
  }
}

[[noreturn]] void bad_spec(const std::string& spec, const std::string& why) {
  throw InvalidArgument("[model spec] '" + spec + "': " + why + " (see --help for the grammar)");
}

int64_t parse_positive(const std::string& text, const std::string& spec, const std::string& what) {
  char* end = nullptr;
  const long long v = text.empty() ? 0 : std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < 1 || v > (1LL << 31))
    bad_spec(spec, what + " '" + text + "' is not a positive integer");
  return v;
}

float parse_rate(const std::string& text, const std::string& spec) {
  char* end = nullptr;
  const float v = text.empty() ? -1.0f : std::strtof(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(v >= 0.0f && v < 1.0f))
    bad_spec(spec, "dropout rate '" + text + "' is not in [0, 1)");
  return v;
}

// Counts the parameters a spec builds: add() takes a layer (a weight of shape `weight`, `bias`
// biases) before it is allocated and refuses the spec once the total would pass `limit`.
struct ParameterCount {
  int64_t total = 0;
  int64_t limit = kMaxModelParameters;
  void add(const Shape& weight, int64_t bias, const std::string& spec) {
    int64_t n = 0;
    if (!try_shape_numel(weight, n) || __builtin_add_overflow(n, bias, &n) || __builtin_add_overflow(total, n, &total) ||
        total > limit)
      bad_spec(spec, "too large: a layer of weight " + shape_to_string(weight) + " takes the model past " +
                         std::to_string(limit) + " parameters");
  }
};

struct Parsed {
  std::string kind;  // "mlp" or "cnn"
  std::vector<std::string> items;
  std::string options;  // after a second ':' (mlp)
};

Parsed parse(const std::string& spec) {
  const size_t colon = spec.find(':');
  if (colon == std::string::npos) bad_spec(spec, "expected 'mlp:...' or 'cnn:...'");
  Parsed p;
  p.kind = spec.substr(0, colon);
  std::string body = spec.substr(colon + 1);
  const size_t second = body.find(':');
  if (second != std::string::npos) {
    p.options = body.substr(second + 1);
    body = body.substr(0, second);
  }
  if (p.kind != "mlp" && p.kind != "cnn") bad_spec(spec, "unknown model kind '" + p.kind + "' (valid: mlp, cnn)");
  p.items = split(body, '-');
  if (p.items.size() < 2) bad_spec(spec, "needs an input and at least one layer");
  return p;
}

Shape parse_image_shape(const std::string& item, const std::string& spec) {
  const std::vector<std::string> dims = split(item, 'x');
  if (dims.size() != 3) bad_spec(spec, "cnn input '" + item + "' must be CxHxW, e.g. 1x28x28");
  return {parse_positive(dims[0], spec, "channels"), parse_positive(dims[1], spec, "height"),
          parse_positive(dims[2], spec, "width")};
}

void build_mlp(const Parsed& p, const std::string& spec, Rng& rng, uint64_t seed, ParameterCount& parameters,
               Sequential& model) {
  float dropout = 0.0f;
  if (!p.options.empty()) {
    if (p.options.rfind("dropout=", 0) != 0) bad_spec(spec, "unknown option '" + p.options + "' (valid: dropout=P)");
    dropout = parse_rate(p.options.substr(8), spec);
  }
  std::vector<int64_t> widths;
  for (const std::string& item : p.items) widths.push_back(parse_positive(item, spec, "width"));
  for (size_t i = 0; i + 1 < widths.size(); ++i) {
    const bool last = i + 2 == widths.size();
    parameters.add({widths[i + 1], widths[i]}, widths[i + 1], spec);
    model.add(std::make_unique<Linear>(widths[i], widths[i + 1], /*he_init=*/!last, rng));
    if (!last) {
      model.add(std::make_unique<ReLU>());
      if (dropout > 0.0f) model.add(std::make_unique<Dropout>(dropout, seed + model.size()));
    }
  }
}

void build_cnn(const Parsed& p, const std::string& spec, Rng& rng, uint64_t seed, ParameterCount& parameters,
               Sequential& model) {
  Shape shape = parse_image_shape(p.items[0], spec);
  shape.insert(shape.begin(), 1);  // a batch of one, to track shapes
  auto add = [&](std::unique_ptr<Layer> layer) {
    try {
      shape = layer->output_shape(shape);
    } catch (const InvalidArgument& e) {
      bad_spec(spec, e.what());
    }
    model.add(std::move(layer));
  };
  auto features = [&]() {
    if (shape.size() > 2) add(std::make_unique<Flatten>());
    return shape[1];
  };
  for (size_t i = 1; i < p.items.size(); ++i) {
    const std::string& item = p.items[i];
    const bool last = i + 1 == p.items.size();
    if (last) {
      const int64_t in = features(), out = parse_positive(item, spec, "output size");
      parameters.add({out, in}, out, spec);
      add(std::make_unique<Linear>(in, out, false, rng));
    } else if (item[0] == 'c') {
      // cN[kK][sS]
      const size_t k_at = item.find('k'), s_at = item.find('s');
      const int64_t out = parse_positive(item.substr(1, std::min(k_at, s_at) - 1), spec, "channels");
      const int64_t kernel =
          k_at == std::string::npos ? 3 : parse_positive(item.substr(k_at + 1, s_at == std::string::npos ? std::string::npos : s_at - k_at - 1), spec, "kernel");
      const int64_t stride = s_at == std::string::npos ? 1 : parse_positive(item.substr(s_at + 1), spec, "stride");
      if (shape.size() != 4) bad_spec(spec, "conv '" + item + "' after a flatten");
      parameters.add({out, shape[1], kernel, kernel}, out, spec);
      add(std::make_unique<Conv2d>(shape[1], out, kernel, Conv2dGeometry{stride, kernel / 2}, rng));
      add(std::make_unique<ReLU>());
    } else if (item[0] == 'p') {
      add(std::make_unique<MaxPool2d>(item.size() > 1 ? parse_positive(item.substr(1), spec, "pool window") : 2));
    } else if (item[0] == 'd') {
      add(std::make_unique<Dropout>(parse_rate(item.substr(1), spec), seed + model.size()));
    } else if (item[0] == 'f') {
      const int64_t in = features(), out = parse_positive(item.substr(1), spec, "width");
      parameters.add({out, in}, out, spec);
      add(std::make_unique<Linear>(in, out, true, rng));
      add(std::make_unique<ReLU>());
    } else {
      bad_spec(spec, "unknown item '" + item + "' (valid: cN[kK][sS], p[W], dP, fN, then the output size)");
    }
  }
}

}  // namespace

Sequential build_model(const std::string& spec, uint64_t seed, int64_t max_parameters) {
  const Parsed p = parse(spec);
  Rng rng(seed);
  Sequential model(spec);
  ParameterCount parameters;
  parameters.limit = max_parameters;
  if (p.kind == "mlp")
    build_mlp(p, spec, rng, seed, parameters, model);
  else
    build_cnn(p, spec, rng, seed, parameters, model);
  return model;
}

Shape model_input_shape(const std::string& spec) {
  const Parsed p = parse(spec);
  if (p.kind == "mlp") return {parse_positive(p.items[0], spec, "input width")};
  return parse_image_shape(p.items[0], spec);
}

const char* model_spec_help() {
  return "Model specs (PyTorch nn.Sequential equivalents; parameters are named '<layer>.weight'/'<layer>.bias'):\n"
         "  mlp:D0-D1-...-Dk[:dropout=P]  Linear(D0,D1), ReLU, [Dropout(P)], ..., Linear(Dk-1,Dk)\n"
         "      e.g. mlp:784-256-256-10\n"
         "  cnn:CxHxW-ITEM-...-K           input C x H x W, then items in order:\n"
         "      cN[kK][sS]  Conv2d(in,N,K=3,stride=S=1,padding=K/2) + ReLU\n"
         "      p[W]        MaxPool2d(W=2)\n"
         "      dP          Dropout(P)\n"
         "      fN          Linear(in,N) + ReLU (Flatten inserted before the first Linear)\n"
         "      K           last item: Linear(in,K), the output\n"
         "      e.g. cnn:1x28x28-c32-p-c64-p-f128-10\n";
}

}  // namespace nnr
