#include "engine/nn/sequential.h"

#include <cstring>
#include <sstream>

#include "engine/core/context.h"
#include "engine/core/error.h"

namespace nnr {
namespace {

// Zeroes entries [offset, offset + count) of t (host memset, or a memset on t's CUDA stream).
void zero_range(Tensor& t, int64_t offset, int64_t count) {
  if (count <= 0) return;
  float* start = t.data() + offset;
  const size_t bytes = static_cast<size_t>(count) * sizeof(float);
  if (t.device() == Device::CUDA)
    t.context()->zero_bytes(start, bytes);
  else
    std::memset(start, 0, bytes);
}

}  // namespace

Layer& Sequential::add(std::unique_ptr<Layer> layer) {
  const std::string prefix = std::to_string(layers_.size()) + ".";
  for (Parameter* p : layer->parameters()) p->name = prefix + p->name;
  layers_.push_back(std::move(layer));
  return *layers_.back();
}

Tensor Sequential::forward(const Tensor& x) {
  if (layers_.empty()) return x.clone();
  Tensor h = layers_[0]->forward(x, false);
  for (size_t i = 1; i < layers_.size(); ++i) h = layers_[i]->forward(h, false);
  return h;
}

const Tensor& Sequential::forward(const Tensor& x, Tape& tape) {
  tape.clear();
  const Tensor* h = &x;
  for (auto& layer : layers_) h = &tape.apply(*layer, *h);
  return *h;
}

void Sequential::to(Device device, Context& ctx) {
  zeroed_.clear();
  for (Parameter* p : parameters())
    for (Tensor* t : {&p->value, &p->grad, &p->omega, &p->anchor, &p->path_integral})
      if (t->defined()) *t = t->to(device, ctx);
}

std::vector<Parameter*> Sequential::parameters() {
  std::vector<Parameter*> all;
  for (auto& layer : layers_)
    for (Parameter* p : layer->parameters()) all.push_back(p);
  return all;
}

Parameter* Sequential::find_parameter(const std::string& name) {
  for (Parameter* p : parameters())
    if (p->name == name) return p;
  return nullptr;
}

void Sequential::zero_grad() {
  const std::vector<Parameter*> params = parameters();
  zeroed_.resize(params.size(), false);
  zeroed_with_.resize(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    Parameter& p = *params[i];
    const UpdateMask& m = p.mask;
    UpdateMask& last = zeroed_with_[i];
    const bool same_rows = zeroed_[i] && m.kind == UpdateMask::Kind::Rows && last.kind == UpdateMask::Kind::Rows &&
                           m.rows == last.rows && p.grad.numel() == p.value.numel();
    if (!same_rows) {
      p.grad.zero();
    } else {
      m.validate(p.value.numel(), p.rows(), p.name);  // its rows index the fills below
      // Runs of adjacent open rows, one fill each.
      const int64_t len = p.row_length();
      for (size_t k = 0; k < m.rows.size();) {
        size_t end = k + 1;
        while (end < m.rows.size() && m.rows[end] == m.rows[end - 1] + 1) ++end;
        zero_range(p.grad, m.rows[k] * len, (m.rows[end - 1] + 1 - m.rows[k]) * len);
        k = end;
      }
    }
    last.kind = m.kind;
    last.rows = m.rows;  // no allocation once the capacity is there
    zeroed_[i] = true;
  }
}

void Sequential::open_all() {
  for (Parameter* p : parameters()) p->mask = UpdateMask::all();
}

int64_t Sequential::parameter_count() {
  int64_t n = 0;
  for (Parameter* p : parameters()) n += p->value.numel();
  return n;
}

ComputeCounts Sequential::compute_counts() const {
  ComputeCounts sum;
  for (const auto& layer : layers_) sum += layer->compute_counts();
  return sum;
}

void Sequential::reset_compute_counts() {
  for (auto& layer : layers_) layer->reset_compute_counts();
}

Shape Sequential::output_shape(const Shape& input) const {
  Shape s = input;
  for (const auto& layer : layers_) s = layer->output_shape(s);
  return s;
}

std::string Sequential::describe() const {
  std::ostringstream out;
  for (size_t i = 0; i < layers_.size(); ++i) out << "  (" << i << "): " << layers_[i]->describe() << "\n";
  return out.str();
}

}  // namespace nnr
