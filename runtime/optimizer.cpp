#include "runtime/optimizer.h"

#include <algorithm>
#include <cmath>

#include "kernels/ops.h"

namespace attnres {

float lr_at(const TrainConfig& t, int step) {
  if (step < t.warmup_steps) return t.lr * float(step + 1) / float(t.warmup_steps);
  const int decay_steps = t.steps - t.warmup_steps;
  if (decay_steps <= 1) return t.lr;
  const double progress = double(step - t.warmup_steps) / double(decay_steps - 1);
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return float(t.min_lr + (t.lr - t.min_lr) * cosine);
}

namespace {

// The elements [lo, hi) of tensor `s` inside [begin, begin + count); lo >= hi when none.
struct Overlap {
  size_t lo, hi;
};
Overlap overlap(const TensorSpec& s, size_t begin, size_t count) {
  return {std::max(s.offset, begin), std::min(s.offset + s.numel, begin + count)};
}

}  // namespace

void AdamW::init(Chunk& c, size_t first, size_t n) {
  m = kernels::DeviceBuffer<float>(c.dev, n);
  v = kernels::DeviceBuffer<float>(c.dev, n);
  kernels::zero(c.dev, m.data(), n);
  kernels::zero(c.dev, v.data(), n);
  begin = first;
  t = 0;
  if (!c.cfg.bf16()) {
    master = c.params.data() + begin;
    return;
  }
  own_masters = kernels::DeviceBuffer<float>(c.dev, n);
  master = own_masters.data();
  kernels::convert(c.dev, master, c.compute.data() + begin, n);
}

void AdamW::step(const ParamLayout& layout, const float* grads, float lr, const TrainConfig& cfg) {
  ++t;
  for (const auto& s : layout.tensors) {
    const auto [lo, hi] = overlap(s, begin, count());
    if (lo >= hi) continue;
    const size_t k = lo - begin;
    kernels::adamw_update(m.device(), master + k, grads + k, m.data() + k, v.data() + k, hi - lo, lr, cfg.beta1,
                          cfg.beta2, cfg.adam_eps, s.decay ? cfg.weight_decay : 0.0f, t);
  }
}

void AdamW::load(Chunk& c, const float* host) {
  chunk_load_weights(c, host);
  if (c.cfg.bf16()) kernels::from_host(c.dev, master, host + begin, count());
}

// One scratch for every tensor: the device's stream (or the CPU) runs their
// sums one after another.
void tensor_sum_squares(const kernels::Device& dev, double* out, double* scratch, const ParamLayout& layout,
                        const float* grads, size_t begin, size_t count) {
  kernels::zero(dev, out, layout.tensors.size());
  for (size_t t = 0; t < layout.tensors.size(); ++t) {
    const auto [lo, hi] = overlap(layout.tensors[t], begin, count);
    if (lo < hi) kernels::sum_squares(dev, out + t, scratch, grads + (lo - begin), hi - lo);
  }
}

size_t tensor_sum_squares_scratch(const ParamLayout& layout) {
  size_t most = 0;
  for (const auto& s : layout.tensors) most = std::max(most, kernels::sum_squares_scratch(s.numel));
  return most;
}

double global_norm(const std::vector<double>& partials) {
  double sum = 0.0;
  for (double p : partials) sum += p;
  return std::sqrt(sum);
}

float clip_factor(double norm, float max_norm) {
  if (max_norm <= 0.0f || norm <= double(max_norm)) return 1.0f;
  return float(double(max_norm) / (norm + 1e-6));
}

}  // namespace attnres
