#include "models/params.h"

#include <xxhash.h>

#include <cassert>
#include <cmath>

namespace attnres {

const TensorSpec* ParamLayout::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

static void add_tensor(ParamLayout& l, std::string name, std::vector<int64_t> shape) {
  TensorSpec t;
  t.name = std::move(name);
  t.shape = std::move(shape);
  t.numel = 1;
  for (int64_t s : t.shape) t.numel *= static_cast<size_t>(s);
  t.decay = t.shape.size() >= 2;  // gains and pseudo-queries are exempt
  t.offset = l.total;
  l.total += t.numel;
  l.tensors.push_back(std::move(t));
}

ParamLayout make_param_layout(const ModelConfig& cfg, int first, int last) {
  assert(0 <= first && first < last && last <= cfg.num_sublayers());
  const int64_t V = cfg.vocab_size, d = cfg.d_model, F = cfg.d_ff;
  ParamLayout l;
  if (first == 0) add_tensor(l, "embed.weight", {V, d});
  for (int j = first; j < last; ++j) {
    const std::string p = "layers." + std::to_string(j) + ".";
    add_tensor(l, p + "norm.weight", {d});
    if (j % 2 == 0) {
      for (const char* w : {"q", "k", "v", "o"}) add_tensor(l, p + "attn." + w + ".weight", {d, d});
    } else {
      add_tensor(l, p + "mlp.gate.weight", {F, d});
      add_tensor(l, p + "mlp.up.weight", {F, d});
      add_tensor(l, p + "mlp.down.weight", {d, F});
    }
    if (cfg.attnres()) {
      add_tensor(l, p + "res.query", {d});
      add_tensor(l, p + "res.norm.weight", {d});
    }
  }
  if (last == cfg.num_sublayers()) {
    if (cfg.attnres()) {
      add_tensor(l, "output_res.query", {d});
      add_tensor(l, "output_res.norm.weight", {d});
    }
    add_tensor(l, "final_norm.weight", {d});
    add_tensor(l, "lm_head.weight", {V, d});
  }
  return l;
}

// splitmix64: a small counter-based generator; one stream per tensor.
static uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void fill_normal(float* out, size_t n, float std, uint64_t seed, const std::string& name) {
  uint64_t s = XXH64(name.data(), name.size(), seed);
  for (size_t i = 0; i < n; i += 2) {  // Box-Muller, two values per draw
    double u1 = (static_cast<double>(splitmix64(s) >> 11) + 1.0) * 0x1.0p-53;
    double u2 = static_cast<double>(splitmix64(s) >> 11) * 0x1.0p-53;
    double r = std::sqrt(-2.0 * std::log(u1));
    out[i] = static_cast<float>(std * r * std::cos(2.0 * M_PI * u2));
    if (i + 1 < n) out[i + 1] = static_cast<float>(std * r * std::sin(2.0 * M_PI * u2));
  }
}

static bool ends_with(const std::string& s, const char* suffix) {
  const std::string x(suffix);
  return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
}

void init_params(const ModelConfig& cfg, const ParamLayout& layout, float* params,
                 uint64_t seed) {
  // Projections that write into the residual stream are scaled with depth.
  const float out_std = 0.02f / std::sqrt(2.0f * static_cast<float>(cfg.n_layers));
  for (const auto& t : layout.tensors) {
    float* p = params + t.offset;
    if (ends_with(t.name, "res.query")) {
      for (size_t i = 0; i < t.numel; ++i) p[i] = 0.0f;
    } else if (t.shape.size() == 1) {
      for (size_t i = 0; i < t.numel; ++i) p[i] = 1.0f;
    } else {
      const bool out_proj = ends_with(t.name, "attn.o.weight") || ends_with(t.name, "mlp.down.weight");
      const float std = out_proj ? out_std : 0.02f;
      fill_normal(p, t.numel, std, seed, t.name);
    }
  }
}

}  // namespace attnres
