#include "models/params.h"

#include <xxhash.h>

#include <algorithm>
#include <cassert>
#include <cmath>

namespace attnres {

const TensorSpec* ParamLayout::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

// Megatron's split of a tensor (DESIGN §6): the dimension cut over tp ranks,
// or -1 for a replicated tensor.
static int shard_dim_of(const std::string& name) {
  for (const char* rows : {"embed.weight", "lm_head.weight", ".attn.q.weight", ".attn.k.weight",
                           ".attn.v.weight", ".mlp.gate.weight", ".mlp.up.weight"})
    if (name.ends_with(rows)) return 0;
  for (const char* cols : {".attn.o.weight", ".mlp.down.weight"})
    if (name.ends_with(cols)) return 1;
  return -1;
}

static void add_tensor(ParamLayout& l, std::string name, std::vector<int64_t> shape, TpRank tp) {
  TensorSpec t;
  t.global_shape = shape;
  t.shard_dim = tp.size > 1 ? shard_dim_of(name) : -1;
  if (t.sharded()) {
    int64_t& extent = shape[size_t(t.shard_dim)];
    assert(extent % tp.size == 0);
    extent /= tp.size;
    t.shard_offset = extent * tp.rank;
  }
  t.name = std::move(name);
  t.shape = std::move(shape);
  t.numel = 1;
  for (int64_t s : t.shape) t.numel *= static_cast<size_t>(s);
  t.decay = t.shape.size() >= 2;  // gains and pseudo-queries are exempt
  t.offset = l.total;
  l.total += t.numel;
  l.tensors.push_back(std::move(t));
}

ParamLayout make_param_layout(const ModelConfig& cfg, int first, int last, TpRank tp) {
  assert(0 <= first && first < last && last <= cfg.num_sublayers());
  assert(0 <= tp.rank && tp.rank < tp.size);
  const int64_t V = cfg.vocab_size, d = cfg.d_model, F = cfg.d_ff;
  ParamLayout l;
  auto add = [&](std::string name, std::vector<int64_t> shape) { add_tensor(l, std::move(name), std::move(shape), tp); };
  if (first == 0) add("embed.weight", {V, d});
  for (int j = first; j < last; ++j) {
    const std::string p = "layers." + std::to_string(j) + ".";
    add(p + "norm.weight", {d});
    if (j % 2 == 0) {
      for (const char* w : {"q", "k", "v", "o"}) add(p + "attn." + w + ".weight", {d, d});
    } else {
      add(p + "mlp.gate.weight", {F, d});
      add(p + "mlp.up.weight", {F, d});
      add(p + "mlp.down.weight", {d, F});
    }
    if (cfg.attnres()) {
      add(p + "res.query", {d});
      add(p + "res.norm.weight", {d});
    }
  }
  if (last == cfg.num_sublayers()) {
    if (cfg.attnres()) {
      add("output_res.query", {d});
      add("output_res.norm.weight", {d});
    }
    add("final_norm.weight", {d});
    add("lm_head.weight", {V, d});
  }
  return l;
}

// splitmix64 is counter-based: draw k (1-based) of a stream seeded with s0
// is mix(s0 + k * golden), so any element can be drawn without the others.
static uint64_t splitmix64_at(uint64_t s0, uint64_t k) {
  uint64_t z = s0 + k * 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void fill_normal(float* out, size_t first, size_t n, float std, uint64_t seed, const std::string& name) {
  const uint64_t s0 = XXH64(name.data(), name.size(), seed);
  for (size_t i = first; i < first + n; ++i) {  // Box-Muller: element pair p uses draws 2p+1, 2p+2
    const uint64_t p = i / 2;
    const double u1 = (static_cast<double>(splitmix64_at(s0, 2 * p + 1) >> 11) + 1.0) * 0x1.0p-53;
    const double u2 = static_cast<double>(splitmix64_at(s0, 2 * p + 2) >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double angle = 2.0 * M_PI * u2;
    out[i - first] = static_cast<float>(std * r * (i % 2 == 0 ? std::cos(angle) : std::sin(angle)));
  }
}

// Calls f(local row start, global row start, length) for each contiguous run
// of a shard's elements.
template <class F>
static void for_each_shard_run(const TensorSpec& t, F f) {
  if (t.shard_dim != 1) {  // the whole tensor or a block of rows: one run
    const size_t cols = t.numel / size_t(t.shape[0]);
    f(size_t(0), size_t(t.shard_offset) * cols, t.numel);
    return;
  }
  const size_t rows = size_t(t.shape[0]), w = size_t(t.shape[1]), cols = size_t(t.global_shape[1]);
  for (size_t r = 0; r < rows; ++r) f(r * w, r * cols + size_t(t.shard_offset), w);
}

void shard_to_whole(float* whole, const TensorSpec& t, const float* shard) {
  for_each_shard_run(t, [&](size_t local, size_t global, size_t n) { std::copy_n(shard + local, n, whole + global); });
}

void whole_to_shard(float* shard, const TensorSpec& t, const float* whole) {
  for_each_shard_run(t, [&](size_t local, size_t global, size_t n) { std::copy_n(whole + global, n, shard + local); });
}

// Draws a matrix shard's elements from the whole tensor's sequence (row-major
// global indices), so shards put together equal the tp = 1 tensor bit for bit.
static void fill_normal_shard(float* out, const TensorSpec& t, float std, uint64_t seed) {
  for_each_shard_run(t, [&](size_t local, size_t global, size_t n) {
    fill_normal(out + local, global, n, std, seed, t.name);
  });
}

void init_params(const ModelConfig& cfg, const ParamLayout& layout, float* params,
                 uint64_t seed) {
  // Projections that write into the residual stream are scaled with depth.
  const float out_std = 0.02f / std::sqrt(2.0f * static_cast<float>(cfg.n_layers));
  for (const auto& t : layout.tensors) {
    float* p = params + t.offset;
    if (t.name.ends_with("res.query")) {
      std::fill_n(p, t.numel, 0.0f);
    } else if (t.shape.size() == 1) {
      std::fill_n(p, t.numel, 1.0f);
    } else {
      const bool out_proj = t.name.ends_with("attn.o.weight") || t.name.ends_with("mlp.down.weight");
      fill_normal_shard(p, t, out_proj ? out_std : 0.02f, seed);
    }
  }
}

}  // namespace attnres
