#include "models/chunk.h"

#include <cassert>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "models/chunk_parts.h"

namespace attnres {

namespace k = kernels;

// ---- parameters ------------------------------------------------------------------
// Every tensor of `layout`, looked up by name once: at(name) gives its view,
// given the tensor or null.
template <class T, class At>
static ChunkOf<T> resolve(const ParamLayout& layout, int first, int last, At at) {
  auto find = [&](const std::string& name) -> T { return at(layout.find(name)); };
  ChunkOf<T> v;
  v.embed = find("embed.weight");
  for (int j = first; j < last; ++j) {
    const std::string p = "layers." + std::to_string(j) + ".";
    SublayerOf<T> s{};
    s.norm = find(p + "norm.weight");
    s.q = find(p + "attn.q.weight"), s.k = find(p + "attn.k.weight"), s.v = find(p + "attn.v.weight");
    s.o = find(p + "attn.o.weight");
    s.gate = find(p + "mlp.gate.weight"), s.up = find(p + "mlp.up.weight"), s.down = find(p + "mlp.down.weight");
    s.res_query = find(p + "res.query"), s.res_norm = find(p + "res.norm.weight");
    v.sub.push_back(s);
  }
  v.out_query = find("output_res.query"), v.out_norm = find("output_res.norm.weight");
  v.final_norm = find("final_norm.weight"), v.lm_head = find("lm_head.weight");
  return v;
}

// Gradient views into `base` (the layout's flat buffer).
static ChunkTensors resolve_grads(const Chunk& c, float* base, int first, int last) {
  return resolve<float*>(c.layout, first, last,
                         [&](const TensorSpec* t) { return t ? base + t->offset : nullptr; });
}

// Weight views: params in an fp32 run; compute in a bf16 one, and widened
// for the vectors (packed in layout order, as widened_offsets gives them).
static ChunkWeights resolve_weights(const Chunk& c, int first, int last) {
  const std::vector<size_t> at_widened = widened_offsets(c.layout);
  return resolve<Weight>(c.layout, first, last, [&](const TensorSpec* t) {
    Weight w;
    if (!t) return w;
    if (!c.cfg.bf16()) return Weight{c.params.data() + t->offset, nullptr};
    w.h = c.compute.data() + t->offset;
    if (!t->decay) w.f = c.widened.data() + at_widened[size_t(t - c.layout.tensors.data())];
    return w;
  });
}

void chunk_init(Chunk& c, const ModelConfig& cfg, int first, int last, int batch,
                uint64_t seed, k::Device dev, const TensorParallel& tp) {
  assert((tp.tp.size == 1) == (tp.coll == nullptr));
  assert(!tp.sequence_parallel || tp.tp.size > 1);
  const ChunkFloats f = chunk_floats(cfg, first, last, batch, tp);
  c.cfg = cfg;
  c.dev = dev;
  c.first = first, c.last = last, c.batch = batch;
  c.tp = tp;
  c.dims = chunk_dims(cfg, batch, tp);
  c.has_embed = first == 0;
  c.has_head = last == cfg.num_sublayers();
  c.layout = make_param_layout(cfg, first, last, tp.tp);
  c.params = k::DeviceBuffer<float>(dev, f.params);
  c.compute = k::DeviceBuffer<k::bf16>(dev, f.compute_weights);
  c.widened = k::DeviceBuffer<float>(dev, f.widened);
  c.grads = k::DeviceBuffer<float>(dev, f.grads);
  c.rope_cos = k::DeviceBuffer<float>(dev, f.rope / 2);
  c.rope_sin = k::DeviceBuffer<float>(dev, f.rope / 2);
  c.scratch = k::DeviceBuffer<float>(dev, f.scratch);
  c.p = resolve_weights(c, first, last);
  c.g = resolve_grads(c, c.grads.data(), first, last);
  c.t = carve_scratch({cfg, first, last, batch, c.dims}, c.scratch.data(), nullptr);
  c.cos = c.rope_cos.data(), c.sin = c.rope_sin.data();

  // Host-side values, then one copy each to the device.
  std::vector<float> host(c.layout.total);
  init_params(cfg, c.layout, host.data(), seed);
  chunk_load_weights(c, host.data());
  k::zero(dev, c.grads.data(), c.grads.size());
  std::vector<float> cos_t(f.rope / 2), sin_t(f.rope / 2);
  k::rope_tables(cos_t.data(), sin_t.data(), cfg.seq_len, cfg.head_dim(), cfg.rope_theta);
  k::copy(dev, c.rope_cos.data(), cos_t.data(), cos_t.size(), k::CopyKind::HostToDevice);
  k::copy(dev, c.rope_sin.data(), sin_t.data(), sin_t.size(), k::CopyKind::HostToDevice);
  k::synchronize(dev);  // before the host buffers go
}

Chunk chunk_segment(const Chunk& c, int first, int last) {
  assert(c.first <= first && first < last && last <= c.last);
  Chunk s;
  s.cfg = c.cfg;
  s.dev = c.dev;
  s.first = first, s.last = last, s.batch = c.batch;
  s.tp = c.tp;
  s.dims = c.dims;
  s.has_embed = first == 0;
  s.has_head = last == c.cfg.num_sublayers();
  s.p = resolve_weights(c, first, last);
  s.g = resolve_grads(c, const_cast<float*>(c.grads.data()), first, last);
  s.t = c.t;
  s.cos = c.cos, s.sin = c.sin;
  s.progress = c.progress;
  return s;
}

// ---- sublayers -----------------------------------------------------------------
// Even sublayers are attention, odd ones the MLP (DESIGN §1).
void sublayer_forward(const Chunk& c, const SublayerWeights& p, SublayerActs& s, int j) {
  if (c.progress) c.progress();
  float* y = partial_target(c, s.y);
  if (j % 2 == 0)
    attention_sublayer_forward(c, p, s, y);
  else
    mlp_sublayer_forward(c, p, s, y);
  sum_partials(c, y, s.y);
  round_stream(c, s.y);
}

void sublayer_backward(const Chunk& c, const SublayerWeights& p, const SublayerTensors& g, SublayerActs& s, int j,
                       float* dh, float* sdot) {
  if (c.progress) c.progress();
  const BackwardScratch& t = c.t;
  const ChunkDims& x = c.dims;
  if (j % 2 == 0)
    attention_sublayer_backward(c, p, s);
  else
    mlp_sublayer_backward(c, p, s);
  const float* dxn = sum_partials(c, t.dxn, t.dxn_res);
  k::rmsnorm_backward(c.dev, dh, g.norm, dxn, s.h, p.norm.f, s.rstd, x.Nr, x.d, sdot);
}

// ---- forward -------------------------------------------------------------------
void chunk_forward(const Chunk& c, ChunkActs& a, const int32_t* tokens, const int32_t* targets,
                   const ResidualState& in, double* loss) {
  const int Nr = c.dims.Nr, d = c.dims.d;
  ActsView& v = a.v;
  if (c.has_embed) embed_forward(c, v.x0, tokens);
  if (c.cfg.attnres()) return attnres_forward(c, a, targets, in, loss);

  // x_{j+1} = x_j + f_j(x_j).
  if (!c.has_embed) v.sub[0].h = in.hidden;  // the only pointer that changes per forward
  const float* x = v.sub[0].h;
  for (int j = c.first; j < c.last; ++j) {
    SublayerActs& s = v.sub[j - c.first];
    const SublayerWeights& p = c.p.sub[j - c.first];
    norm_to_full(c, s.xn, s.xn_h, s.rstd, s.h, p.norm.f);
    sublayer_forward(c, p, s, j);
    k::add(c.dev, s.stream, x, s.y, size_t(Nr) * d, c.cfg.bf16());
    x = s.stream;
  }
  a.out = ResidualState{};
  a.out.hidden = const_cast<float*>(x);
  if (!c.has_head) return;
  norm_to_full(c, v.head.xn, v.head.xn_h, v.head.rstd, x, c.p.final_norm.f);
  head_forward(c, v.head, targets, loss);
}

double chunk_forward(const Chunk& c, ChunkActs& a, const int32_t* tokens, const int32_t* targets,
                     const ResidualState& in) {
  k::DeviceBuffer<double> loss(c.dev, 1);
  k::zero(c.dev, loss.data(), 1);
  chunk_forward(c, a, tokens, targets, in, loss.data());
  return k::to_host(c.dev, loss.data(), 1)[0];
}

const float* chunk_token_losses(const Chunk& c, const ChunkActs& a) {
  assert(c.has_head);
  return a.v.head.losses;
}

// ---- backward ------------------------------------------------------------------
void chunk_backward_input(const Chunk& c, ChunkActs& a, const int32_t* tokens,
                          const int32_t* targets, float loss_scale, ResidualState& dout,
                          ResidualState& din) {
  if (c.cfg.attnres()) {
    attnres_backward_input(c, a, tokens, targets, loss_scale, dout, din);
    return;
  }
  const size_t Nrd = size_t(c.dims.Nr) * c.dims.d;
  ActsView& v = a.v;
  const BackwardScratch& t = c.t;
  // x_{j+1} = x_j + f_j(x_j): one running gradient, accumulated in place.
  float* dx = dout.hidden ? dout.hidden : t.dx;
  if (c.has_head) {
    head_backward(c, v.head, a.out.hidden, targets, loss_scale, dx, nullptr);
    round_stream(c, dx);
  }
  for (int j = c.last - 1; j >= c.first; --j) {
    SublayerActs& s = v.sub[j - c.first];
    gather_dy(c, s, dx);
    sublayer_backward(c, c.p.sub[j - c.first], c.g.sub[j - c.first], s, j, t.dh, nullptr);
    k::add_inplace(c.dev, dx, t.dh, Nrd, c.cfg.bf16());
  }
  if (c.has_embed) embed_backward(c, dx, tokens);
  din = ResidualState{};
  din.hidden = dx;
}

void chunk_backward_weight(const Chunk& c, ChunkActs& a) {
  const ChunkDims& x = c.dims;
  const ActsView& v = a.v;
  if (c.has_head)
    matmul_backward_weight(c, c.g.lm_head, v.head.dlogits, v.head.dlogits_h, v.head.xn, v.head.xn_h, x.N, x.d, x.Vl);
  for (int j = c.last - 1; j >= c.first; --j) {
    const SublayerActs& s = v.sub[j - c.first];
    const SublayerTensors& g = c.g.sub[j - c.first];
    if (c.progress) c.progress();
    if (j % 2 == 0)
      attention_sublayer_backward_weight(c, g, s);
    else
      mlp_sublayer_backward_weight(c, g, s);
  }
}

void chunk_reduce_replicated_grads(Chunk& c) {
  if (!c.tp.sequence_parallel) return;
  for (const TensorSpec& t : c.layout.tensors)
    if (!t.sharded()) c.tp.coll->allreduce_sum(c.grads.data() + t.offset, t.numel);
}

}  // namespace attnres
