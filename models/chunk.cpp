#include "models/chunk.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/ops.h"

namespace attnres {

namespace k = kernels;

// Sources seen by the AttnRes site of sublayer j: completed ones plus the partial.
static int site_sources(const ModelConfig& cfg, int j) {
  return sources_at(cfg, j) + (partial_at(cfg, j) ? 1 : 0);
}

// ---- layout ----------------------------------------------------------------------
// One microbatch's saved tensors, carved from a flat arena in a fixed order.
// Carving with a null base only counts floats: chunk_floats() and the
// allocations use the same carve functions.
struct Carver {
  float* base;
  size_t used = 0;
  float* take(size_t n) {
    float* p = base ? base + used : nullptr;
    used += (n + 15) & ~size_t(15);  // 64-byte alignment
    return p;
  }
};

// The shape a carve depends on.
struct Shape {
  const ModelConfig& m;
  int first, last, batch;
  ChunkDims dims;
  bool has_embed() const { return first == 0; }
  bool has_head() const { return last == m.num_sublayers(); }
};

ChunkDims chunk_dims(const ModelConfig& cfg, int micro_batch, const TensorParallel& tp) {
  const int t = tp.tp.size;
  ChunkDims x;
  x.N = micro_batch * cfg.seq_len;
  x.Nr = tp.sequence_parallel ? x.N / t : x.N;
  x.d = cfg.d_model;
  x.dl = cfg.d_model / t, x.Hl = cfg.n_heads / t;
  x.Fl = cfg.d_ff / t;
  x.Vl = cfg.vocab_size / t, x.v0 = x.Vl * tp.tp.rank;
  return x;
}

// Standard mode: sublayer `first` of a chunk without the embedding reads the
// incoming hidden state, which changes per forward; its pointer stays null
// here and chunk_forward sets it. Residual-region tensors have Nr rows, the
// matmuls' inputs and outputs N (DESIGN §6).
static ActsView carve_acts(const Shape& sh, float* base, size_t* total) {
  const ModelConfig& m = sh.m;
  const ChunkDims& x = sh.dims;
  const size_t N = size_t(x.N), Nr = size_t(x.Nr), d = size_t(x.d), dl = size_t(x.dl), Fl = size_t(x.Fl);
  const size_t att = size_t(sh.batch) * x.Hl * m.seq_len * m.seq_len;
  Carver cv{base};
  ActsView v{};
  v.x0 = sh.has_embed() ? cv.take(Nr * d) : nullptr;
  v.in_rstd = m.attnres() ? cv.take(Nr * (sources_at(m, sh.first) + 1)) : nullptr;
  for (int j = sh.first; j < sh.last; ++j) {
    SublayerActs s{};
    if (m.attnres()) {
      s.h = cv.take(Nr * d);  // attnres_site_floats_per_token: h, lse, prstd, uv
      s.lse = cv.take(Nr);
      s.prstd = cv.take(Nr);
      s.uv = cv.take(Nr * size_t(sources_at(m, j)));
      // A block's first partial sum is y itself; later ones need their own buffer.
      s.stream = m.starts_block(j) ? nullptr : cv.take(Nr * d);
    } else {
      s.stream = cv.take(Nr * d);
    }
    s.xn = cv.take(N * d);
    s.rstd = cv.take(Nr);
    s.y = cv.take(Nr * d);
    s.dy = cv.take(N * d);
    if (j % 2 == 0) {
      s.q = cv.take(N * dl), s.k = cv.take(N * dl), s.v = cv.take(N * dl);
      // Selective recomputation keeps no probabilities: acts_init points att at scratch.
      s.att = m.recompute == Recompute::Selective ? nullptr : cv.take(att);
      s.ao = cv.take(N * dl);
      s.dq = cv.take(N * dl), s.dk = cv.take(N * dl), s.dv = cv.take(N * dl);
    } else {
      s.gate = cv.take(N * Fl), s.up = cv.take(N * Fl), s.act = cv.take(N * Fl);
      s.dgate = cv.take(N * Fl), s.dup = cv.take(N * Fl);
    }
    if (m.attnres() && m.starts_block(j)) s.stream = s.y;
    // Standard mode: a sublayer's input is the previous stream tensor.
    if (!m.attnres()) s.h = j > sh.first ? v.sub.back().stream : sh.has_embed() ? v.x0 : nullptr;
    v.sub.push_back(s);
  }
  if (sh.has_head()) {
    HeadActs& h = v.head;
    if (m.attnres()) {
      h.h = cv.take(Nr * d);
      h.lse = cv.take(Nr);
      h.uv = cv.take(Nr * size_t(sources_at(m, m.num_sublayers()) - 1));  // the last block's completed sources
    }
    h.xn = cv.take(N * d);
    h.rstd = cv.take(Nr);
    h.logits = cv.take(N * x.Vl);
    h.dlogits = cv.take(N * x.Vl);
    h.losses = cv.take(N);
    h.row_max = cv.take(N);
    h.sum_exp = cv.take(2 * N);  // + target_logit: one all-reduce for both
    h.target_logit = h.sum_exp ? h.sum_exp + N : nullptr;
  }
  if (total) *total = cv.used;
  return v;
}

// Sites of an AttnRes group: the most a group of this chunk holds.
static int max_group_sites(const ModelConfig& m) { return m.attnres() ? std::min(m.block_size, k::kMaxSites) : 1; }
// Blocks of a backward span (below): as many as fit with the output site in
// one pass (R·S + 1 <= kMaxSites), at most 4.
static int span_blocks(const ModelConfig& m) {
  return m.attnres() ? std::clamp((k::kMaxSites - 1) / m.block_size, 1, 4) : 1;
}
// dL/dh and sdot slots of the backward: the sites whose completed-source
// terms wait for a pass (a group's, or a span's), then the output site's.
static int pending_site_slots(const ModelConfig& m) {
  return span_blocks(m) == 1 ? max_group_sites(m) : span_blocks(m) * m.block_size;
}
static int backward_site_slots(const Shape& sh) {
  return pending_site_slots(sh.m) + (sh.m.attnres() && sh.has_head() ? 1 : 0);
}

// Scratch shared by all microbatches of a chunk: one backward at a time.
static BackwardScratch carve_scratch(const Shape& sh, float* base, size_t* total) {
  const ModelConfig& m = sh.m;
  const ChunkDims& x = sh.dims;
  const size_t N = size_t(x.N), Nr = size_t(x.Nr), d = size_t(x.d);
  const int G = backward_site_slots(sh);
  const bool sp = x.Nr != x.N;
  Carver cv{base};
  BackwardScratch s{};
  s.dh = cv.take(size_t(G) * Nr * d), s.dxn = cv.take(N * d);
  s.dao = cv.take(N * x.dl), s.dact = cv.take(N * x.Fl), s.dx = cv.take(Nr * d);
  s.datt = cv.take(size_t(sh.batch) * x.Hl * m.seq_len * m.seq_len);
  if (m.recompute == Recompute::Selective)
    s.att = cv.take(size_t(sh.batch) * x.Hl * m.seq_len * m.seq_len), s.ao = cv.take(N * x.dl);
  if (m.attnres()) {
    s.sdot = cv.take(size_t(G) * Nr);
    s.dquery = cv.take(std::max(k::attnres_block_backward_scratch(x.Nr, G, x.d),
                                k::attnres_partial_backward_scratch(x.Nr, x.d)));
  }
  if (sp) s.dxn_res = cv.take(Nr * d), s.full = cv.take(N * d), s.local = cv.take(Nr * d);
  if (total) *total = cv.used;
  return s;
}

// AttnRes site groups (DESIGN §1.1, the paper's Algorithm 1): sites that
// share their completed sources, computed together. A group starts at the
// chunk's first sublayer and at every block start, and holds at most
// kMaxSites sites.
static int group_start(const Chunk& c, int j) {
  const int b0 = std::max(c.first, c.cfg.block_of(j) * c.cfg.block_size);
  return b0 + (j - b0) / k::kMaxSites * k::kMaxSites;
}
static int group_end(const Chunk& c, int start) {
  return std::min({c.last, (c.cfg.block_of(start) + 1) * c.cfg.block_size, start + k::kMaxSites});
}
// The output site sees what a site after the model's last sublayer would:
// the last block's completed sources, and the final block sum as its
// partial. So its phase 1 runs with the last group when that group has room
// (a pass over those sources fewer, forward and backward), and its phase 2
// merges the final block sum.
static bool head_joins_group(const Chunk& c, int start, int end) {
  return c.has_head && end == c.last && end - start < k::kMaxSites;
}
static bool head_joins_last_group(const Chunk& c) {
  return head_joins_group(c, group_start(c, c.last - 1), c.last);
}

// Backward spans: the backward adds the completed-source terms of the sites
// of up to R consecutive blocks (span_blocks) in one pass over those
// sources, at the span's first block. A source completed inside the span
// gets its terms in a pass of its own, at the block whose backward needs its
// gradient next. Fewer passes read each source and its gradient (a pass is
// bound by memory). Spans are fixed by the config (the blocks b with the same
// b / R), and a chunk that starts inside one splits its sites' terms into the
// same passes, so every pass of a site is the same whatever the pipeline.
static int span_first(const ModelConfig& m, int j) {
  const int R = span_blocks(m);
  return m.block_of(j) / R * R * m.block_size;
}
// The slot of site j's dh and sdot: its index in its group (R = 1) or in
// its span's part of the chunk.
static int site_slot(const Chunk& c, int j) {
  return j - (span_blocks(c.cfg) == 1 ? group_start(c, j) : std::max(c.first, span_first(c.cfg, j)));
}

// The sites of one phase-1 group as the kernels take them (ops.h).
struct GroupSites {
  int S = 0;
  float *h[k::kMaxSites], *lse[k::kMaxSites], *uv[k::kMaxSites];
  const float *w[k::kMaxSites], *g[k::kMaxSites];
  void add(float* h_, float* lse_, float* uv_, const float* w_, const float* g_) {
    h[S] = h_, lse[S] = lse_, uv[S] = uv_, w[S] = w_, g[S] = g_;
    ++S;
  }
};
static void add_head_site(GroupSites& s, const Chunk& c, const HeadActs& h) {
  s.add(h.h, h.lse, h.uv, c.p.out_query, c.p.out_norm);
}
// Sites [start, end), and the output site if it joins them.
static GroupSites group_sites(const Chunk& c, const ActsView& v, int start, int end) {
  GroupSites s;
  for (int i = start; i < end; ++i) {
    const SublayerActs& a = v.sub[size_t(i - c.first)];
    const SublayerTensors& p = c.p.sub[size_t(i - c.first)];
    s.add(a.h, a.lse, a.uv, p.res_query, p.res_norm);
  }
  if (head_joins_group(c, start, end)) add_head_site(s, c, v.head);
  return s;
}

// The sites of one backward pass over completed sources, as
// attnres_block_backward takes them: ascending, the output site last (so
// each source gets their terms in reverse site order).
struct PassSites {
  int S = 0;
  bool head = false;  // the output site is among them: its terms are the first the sources get
  const float *dh[k::kMaxSites], *sdot[k::kMaxSites], *lse[k::kMaxSites], *uv[k::kMaxSites];
  const float *w[k::kMaxSites], *g[k::kMaxSites];
  float *dw[k::kMaxSites], *dg[k::kMaxSites];
  int uv_k[k::kMaxSites];  // each site's completed sources: its u · v row length
  void add(const float* dh_, const float* sdot_, const float* lse_, const float* uv_, int uv_k_, const float* w_,
           const float* g_, float* dw_, float* dg_) {
    assert(S < k::kMaxSites);
    dh[S] = dh_, sdot[S] = sdot_, lse[S] = lse_, uv[S] = uv_, uv_k[S] = uv_k_;
    w[S] = w_, g[S] = g_, dw[S] = dw_, dg[S] = dg_;
    ++S;
  }
  void append(const PassSites& o) {
    for (int i = 0; i < o.S; ++i) add(o.dh[i], o.sdot[i], o.lse[i], o.uv[i], o.uv_k[i], o.w[i], o.g[i], o.dw[i], o.dg[i]);
    head = head || o.head;
  }
};

ChunkFloats chunk_floats(const ModelConfig& cfg, int first, int last, int micro_batch,
                         const TensorParallel& tp) {
  assert(0 <= first && first < last && last <= cfg.num_sublayers() && micro_batch > 0);
  const Shape sh{cfg, first, last, micro_batch, chunk_dims(cfg, micro_batch, tp)};
  ChunkFloats f;
  f.params = f.grads = make_param_layout(cfg, first, last, tp.tp).total;
  f.rope = 2 * (size_t(cfg.seq_len) * cfg.head_dim() / 2);
  carve_scratch(sh, nullptr, &f.scratch);
  carve_acts(sh, nullptr, &f.acts);
  return f;
}

// ---- parameters ------------------------------------------------------------------
// Pointers to every tensor of `layout` inside `base`, looked up by name once.
static ChunkTensors resolve(const ParamLayout& layout, float* base, int first, int last) {
  auto at = [&](const std::string& name) -> float* {
    const TensorSpec* t = layout.find(name);
    return t ? base + t->offset : nullptr;
  };
  ChunkTensors v;
  v.embed = at("embed.weight");
  for (int j = first; j < last; ++j) {
    const std::string p = "layers." + std::to_string(j) + ".";
    SublayerTensors s{};
    s.norm = at(p + "norm.weight");
    s.q = at(p + "attn.q.weight"), s.k = at(p + "attn.k.weight"), s.v = at(p + "attn.v.weight");
    s.o = at(p + "attn.o.weight");
    s.gate = at(p + "mlp.gate.weight"), s.up = at(p + "mlp.up.weight"), s.down = at(p + "mlp.down.weight");
    s.res_query = at(p + "res.query"), s.res_norm = at(p + "res.norm.weight");
    v.sub.push_back(s);
  }
  v.out_query = at("output_res.query"), v.out_norm = at("output_res.norm.weight");
  v.final_norm = at("final_norm.weight"), v.lm_head = at("lm_head.weight");
  return v;
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
  c.grads = k::DeviceBuffer<float>(dev, f.grads);
  c.rope_cos = k::DeviceBuffer<float>(dev, f.rope / 2);
  c.rope_sin = k::DeviceBuffer<float>(dev, f.rope / 2);
  c.scratch = k::DeviceBuffer<float>(dev, f.scratch);
  c.p = resolve(c.layout, c.params.data(), first, last);
  c.g = resolve(c.layout, c.grads.data(), first, last);
  c.t = carve_scratch({cfg, first, last, batch, c.dims}, c.scratch.data(), nullptr);
  c.cos = c.rope_cos.data(), c.sin = c.rope_sin.data();

  // Host-side values, then one copy each to the device.
  std::vector<float> host(c.layout.total);
  init_params(cfg, c.layout, host.data(), seed);
  k::copy(dev, c.params.data(), host.data(), host.size(), k::CopyKind::HostToDevice);
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
  s.p = resolve(c.layout, const_cast<float*>(c.params.data()), first, last);
  s.g = resolve(c.layout, const_cast<float*>(c.grads.data()), first, last);
  s.t = c.t;
  s.cos = c.cos, s.sin = c.sin;
  return s;
}

std::vector<SublayerRange> recompute_segments(const ModelConfig& cfg, int first, int last) {
  if (cfg.recompute == Recompute::Full) return {{first, last}};
  if (cfg.recompute != Recompute::Block) return {};
  std::vector<SublayerRange> out{{first, first + 1}};
  for (int j = first + 1; j < last; ++j) {
    if (cfg.starts_block(j)) out.push_back({j, j});
    out.back().last = j + 1;
  }
  return out;
}

int recompute_kept_outputs(const ModelConfig& cfg, int first, int last) {
  int n = 0;
  for (const SublayerRange& r : recompute_segments(cfg, first, last))
    if (r.last < cfg.num_sublayers()) n += chunk_produced_outputs(cfg, r.first, r.last);
  return n;
}

void acts_init(ChunkActs& a, const Chunk& c, float* base) {
  const Shape sh{c.cfg, c.first, c.last, c.batch, c.dims};
  if (!base) {
    size_t floats = 0;
    carve_acts(sh, nullptr, &floats);
    a.arena = k::DeviceBuffer<float>(c.dev, floats);
    base = a.arena.data();
  }
  a.v = carve_acts(sh, base, nullptr);
  if (c.cfg.recompute == Recompute::Selective)
    for (int j = c.first; j < c.last; ++j)
      if (j % 2 == 0) a.v.sub[size_t(j - c.first)].att = c.t.att;
  size_t n = 0;
  a.site_k.clear();
  if (c.cfg.attnres()) {
    for (int j = c.first; j < c.last; ++j) a.site_k.push_back(site_sources(c.cfg, j));
    if (c.has_head) a.site_k.push_back(sources_at(c.cfg, c.cfg.num_sublayers()));
  }
  for (int kk : a.site_k) n += size_t(kk);
  a.site_src.assign(2 * n, nullptr);  // source pointers, then their rstd rows
  a.out.sources.reserve(size_t(sources_at(c.cfg, c.cfg.num_sublayers())));
}

int chunk_produced_outputs(const ModelConfig& cfg, int first, int last) {
  if (!cfg.attnres()) return 1;
  return sources_at(cfg, last) - (first == 0 ? 0 : sources_at(cfg, first)) + (partial_at(cfg, last) ? 1 : 0);
}

// ---- tensor-parallel collectives (DESIGN §6) ------------------------------------
// Sums the tp ranks' partial [N, d] outputs of a row-parallel matmul into the
// residual rows `res`: an all-reduce in place (partial == res), or under
// sequence parallelism a reduce-scatter. Returns where the sum is.
static float* sum_partials(const Chunk& c, float* partial, float* res) {
  const ChunkDims& x = c.dims;
  if (!c.tp.coll) return partial;
  if (!c.tp.sequence_parallel) {
    c.tp.coll->allreduce_sum(partial, size_t(x.N) * x.d);
    return partial;
  }
  c.tp.coll->reduce_scatter_sum(res, partial, size_t(x.Nr) * x.d);
  return res;
}
// Where a row-parallel matmul writes its partial output destined for `res`.
static float* partial_target(const Chunk& c, float* res) {
  return c.tp.sequence_parallel ? c.t.full : res;
}
// The full [N, d] rows that column-parallel matmuls read, from residual rows:
// an all-gather under sequence parallelism, else a copy (or nothing when the
// caller can read `res` itself: full == res).
static void gather_rows(const Chunk& c, float* full, const float* res) {
  const ChunkDims& x = c.dims;
  if (c.tp.sequence_parallel) {
    c.tp.coll->allgather(full, res, size_t(x.Nr) * x.d);
  } else if (full != res) {
    k::copy(c.dev, full, res, size_t(x.N) * x.d, k::CopyKind::DeviceToDevice);
  }
}
// Where a norm of residual rows goes before gather_rows makes them the full
// rows `xn` the next matmuls read.
static float* norm_target(const Chunk& c, float* xn) { return c.tp.sequence_parallel ? c.t.local : xn; }
// RMSNorm (gain g) of residual rows x into xn.
static void norm_to_full(const Chunk& c, float* xn, float* rstd, const float* x, const float* g) {
  const ChunkDims& d = c.dims;
  float* out = norm_target(c, xn);
  k::rmsnorm_forward(c.dev, out, rstd, x, g, d.Nr, d.d, c.cfg.norm_eps);
  gather_rows(c, xn, out);
}
// An AttnRes site's phase 2 (its partial p merged into h, lse) and the
// RMSNorm (gain norm) of the merged h into xn, in one pass over the rows.
static void merge_norm_to_full(const Chunk& c, float* xn, float* rstd, float* h, float* lse, const float* p,
                               const float* p_rstd, const float* w, const float* g, const float* norm) {
  const ChunkDims& d = c.dims;
  float* out = norm_target(c, xn);
  k::attnres_merge_partial(c.dev, h, lse, p, p_rstd, w, g, d.Nr, d.d, out, rstd, norm, c.cfg.norm_eps);
  gather_rows(c, xn, out);
}

// ---- forward -------------------------------------------------------------------
// y = f_j(s.xn), s.xn = RMSNorm(h) (the caller's): column-parallel q/k/v or
// gate/up on the full rows, then the row-parallel o or down, summed over tp
// into the residual rows of s.y.
static void sublayer_forward(const Chunk& c, const SublayerTensors& p, SublayerActs& s, int j) {
  const ModelConfig& m = c.cfg;
  const ChunkDims& x = c.dims;
  const int N = x.N, d = x.d;
  float* y = partial_target(c, s.y);
  if (j % 2 == 0) {
    const float *cos_t = c.cos, *sin_t = c.sin;
    k::linear_forward(c.dev, s.q, s.xn, p.q, N, d, x.dl);
    k::linear_forward(c.dev, s.k, s.xn, p.k, N, d, x.dl);
    k::linear_forward(c.dev, s.v, s.xn, p.v, N, d, x.dl);
    k::rope_forward(c.dev, s.q, cos_t, sin_t, c.batch, m.seq_len, x.Hl, m.head_dim());
    k::rope_forward(c.dev, s.k, cos_t, sin_t, c.batch, m.seq_len, x.Hl, m.head_dim());
    k::attention_forward(c.dev, s.ao, s.att, s.q, s.k, s.v, c.batch, m.seq_len, x.Hl, m.head_dim());
    k::linear_forward(c.dev, y, s.ao, p.o, N, x.dl, d);
  } else {
    k::linear_forward(c.dev, s.gate, s.xn, p.gate, N, d, x.Fl);
    k::linear_forward(c.dev, s.up, s.xn, p.up, N, d, x.Fl);
    k::swiglu_forward(c.dev, s.act, s.gate, s.up, size_t(N) * x.Fl);
    k::linear_forward(c.dev, y, s.act, p.down, N, x.Fl, d);
  }
  sum_partials(c, y, s.y);
}

// The embedding of the token rows: each tp rank adds its vocabulary rows.
static void embed_forward(const Chunk& c, float* x0, const int32_t* tokens) {
  const ChunkDims& x = c.dims;
  float* out = partial_target(c, x0);
  k::embedding_forward(c.dev, out, tokens, c.p.embed, x.N, x.d, x.v0, x.Vl);
  sum_partials(c, out, x0);
}

// Loss head: h.xn = final norm of [AttnRes_out] (the caller's) -> LM head ->
// cross-entropy over the vocabulary shards (their row statistics combined
// over tp). Returns the loss sum.
static double head_forward(const Chunk& c, HeadActs& h, const int32_t* targets) {
  const ChunkDims& x = c.dims;
  const int N = x.N;
  k::linear_forward(c.dev, h.logits, h.xn, c.p.lm_head, N, x.d, x.Vl);
  k::cross_entropy_row_max(c.dev, h.row_max, h.logits, N, x.Vl);
  if (c.tp.coll) c.tp.coll->allreduce_max(h.row_max, size_t(N));
  k::cross_entropy_row_sums(c.dev, h.sum_exp, h.target_logit, h.logits, targets, h.row_max, N, x.Vl,
                            x.v0, c.cfg.vocab_size);
  if (c.tp.coll) c.tp.coll->allreduce_sum(h.sum_exp, 2 * size_t(N));  // and target_logit
  k::cross_entropy_loss(c.dev, h.losses, h.row_max, h.sum_exp, h.target_logit, targets, N);
  return k::sum(c.dev, h.losses, size_t(N));
}

double chunk_forward(const Chunk& c, ChunkActs& a, const int32_t* tokens,
                     const int32_t* targets, const ResidualState& in) {
  const ModelConfig& m = c.cfg;
  const int Nr = c.dims.Nr, d = c.dims.d;
  ActsView& v = a.v;
  if (c.has_embed) embed_forward(c, v.x0, tokens);

  if (!m.attnres()) {
    if (!c.has_embed) v.sub[0].h = in.hidden;  // the only pointer that changes per forward
    const float* x = v.sub[0].h;
    for (int j = c.first; j < c.last; ++j) {
      SublayerActs& s = v.sub[j - c.first];
      const SublayerTensors& p = c.p.sub[j - c.first];
      norm_to_full(c, s.xn, s.rstd, s.h, p.norm);
      sublayer_forward(c, p, s, j);
      k::add(c.dev, s.stream, x, s.y, size_t(Nr) * d);
      x = s.stream;
    }
    a.out = ResidualState{};
    a.out.hidden = const_cast<float*>(x);
    if (!c.has_head) return 0.0;
    norm_to_full(c, v.head.xn, v.head.rstd, x, c.p.final_norm);
    return head_forward(c, v.head, targets);
  }

  // AttnRes: the completed sources and their key-side rstd rows. The depth
  // attention is token-local: it runs on the residual rows, no communication.
  std::vector<float*>& src = a.out.sources;
  src.clear();
  std::vector<const float*> rstd;
  if (c.has_embed) {
    src.push_back(v.x0);
  } else {
    src.assign(in.sources.begin(), in.sources.end());
  }
  a.n_in_sources = int(src.size());
  assert(a.n_in_sources == sources_at(m, c.first));
  assert(c.has_embed || (in.partial != nullptr) == partial_at(m, c.first));
  for (int s = 0; s < a.n_in_sources; ++s) {
    k::rms_inverse(c.dev, v.in_rstd + size_t(s) * Nr, src[s], Nr, d, m.norm_eps);
    rstd.push_back(v.in_rstd + size_t(s) * Nr);
  }
  float* part = c.has_embed ? nullptr : in.partial;
  const float* part_rstd = nullptr;
  if (part) {
    float* r = v.in_rstd + size_t(a.n_in_sources) * Nr;
    k::rms_inverse(c.dev, r, part, Nr, d, m.norm_eps);
    part_rstd = r;
  }

  size_t site_off = 0;
  const size_t n_site_ptrs = a.site_src.size() / 2;
  auto record = [&](int K) {  // the site's sources, completed then the partial, for backward
    float** sp = a.site_src.data() + site_off;
    float** rp = a.site_src.data() + n_site_ptrs + site_off;
    for (int s = 0; s < int(src.size()); ++s) sp[s] = src[s], rp[s] = const_cast<float*>(rstd[s]);
    if (part) sp[src.size()] = part, rp[src.size()] = const_cast<float*>(part_rstd);
    assert(int(src.size()) + (part ? 1 : 0) == K);
    site_off += size_t(K);
  };
  // Phase 1 for a group's sites against the first K completed sources.
  auto completed_phase = [&](const GroupSites& s, int K) {
    k::attnres_block_forward(c.dev, s.h, s.lse, s.uv, src.data(), rstd.data(), K, s.w, s.g, s.S, Nr, d);
  };

  for (int j = c.first; j < c.last; ++j) {
    SublayerActs& s = v.sub[j - c.first];
    const SublayerTensors& p = c.p.sub[j - c.first];
    if (j > c.first && m.starts_block(j)) {  // the finished block becomes a source
      src.push_back(part), rstd.push_back(part_rstd);
      part = nullptr, part_rstd = nullptr;
    }
    if (j == group_start(c, j)) completed_phase(group_sites(c, v, j, group_end(c, j)), int(src.size()));
    record(a.site_k[j - c.first]);
    if (part)
      merge_norm_to_full(c, s.xn, s.rstd, s.h, s.lse, part, part_rstd, p.res_query, p.res_norm, p.norm);
    else
      norm_to_full(c, s.xn, s.rstd, s.h, p.norm);
    sublayer_forward(c, p, s, j);
    if (part)
      k::add_rms_inverse(c.dev, s.stream, s.prstd, part, s.y, Nr, d, m.norm_eps);
    else  // stream == y
      k::rms_inverse(c.dev, s.prstd, s.stream, Nr, d, m.norm_eps);
    part = s.stream, part_rstd = s.prstd;
  }
  if (!partial_at(m, c.last)) {  // the chunk ends on a block boundary (or at L)
    src.push_back(part), rstd.push_back(part_rstd);
    part = nullptr;
  }
  a.out.partial = part;
  a.out.hidden = nullptr;
  if (!c.has_head) return 0.0;
  // The output site: phase 1 (with the last group, or now), then its
  // partial, the final block sum (src's last entry), merged in.
  HeadActs& h = v.head;
  record(a.site_k.back());
  if (!head_joins_last_group(c)) {
    GroupSites head;
    add_head_site(head, c, h);
    completed_phase(head, int(src.size()) - 1);
  }
  merge_norm_to_full(c, h.xn, h.rstd, h.h, h.lse, src.back(), rstd.back(), c.p.out_query, c.p.out_norm,
                     c.p.final_norm);
  return head_forward(c, h, targets);
}

std::vector<float> chunk_site_weights(const Chunk& c, const ChunkActs& a, int site, int rows) {
  const int d = c.dims.d, K = a.site_k[size_t(site)];
  const bool head = site == c.last - c.first;
  size_t off = 0;
  for (int i = 0; i < site; ++i) off += size_t(a.site_k[size_t(i)]);
  const size_t n_site_ptrs = a.site_src.size() / 2;
  const float* w = head ? c.p.out_query : c.p.sub[size_t(site)].res_query;
  const float* g = head ? c.p.out_norm : c.p.sub[size_t(site)].res_norm;
  const std::vector<float> wh = k::to_host(c.dev, w, size_t(d)), gh = k::to_host(c.dev, g, size_t(d));
  const std::vector<float> lse = k::to_host(c.dev, head ? a.v.head.lse : a.v.sub[size_t(site)].lse, size_t(rows));
  std::vector<float> alpha(size_t(rows) * K);
  for (int s = 0; s < K; ++s) {
    const std::vector<float> v = k::to_host(c.dev, a.site_src[off + size_t(s)], size_t(rows) * d);
    const std::vector<float> r = k::to_host(c.dev, a.site_src[n_site_ptrs + off + size_t(s)], size_t(rows));
    for (int n = 0; n < rows; ++n) {
      double uv = 0;
      for (int i = 0; i < d; ++i) uv += double(wh[size_t(i)]) * gh[size_t(i)] * v[size_t(n) * d + i];
      alpha[size_t(n) * K + s] = float(std::exp(double(r[size_t(n)]) * uv - lse[size_t(n)]));
    }
  }
  return alpha;
}

const float* chunk_token_losses(const Chunk& c, const ChunkActs& a) {
  assert(c.has_head);
  return a.v.head.losses;
}

// ---- backward ------------------------------------------------------------------
// dL/dh of one sublayer from dL/dy (s.dy, full rows); saves what the weight
// pass needs. The input gradient of the column-parallel matmuls is summed
// over tp into the residual rows before the norm's backward. Unless sdot is
// null, sdot = dh · h per row (an AttnRes site's).
static void sublayer_backward(const Chunk& c, const SublayerTensors& p, const SublayerTensors& g,
                              SublayerActs& s, int j, float* dh, float* sdot) {
  const BackwardScratch& t = c.t;
  const ModelConfig& m = c.cfg;
  const ChunkDims& x = c.dims;
  const int N = x.N, d = x.d;
  if (j % 2 == 0) {
    const float *cos_t = c.cos, *sin_t = c.sin;
    k::linear_backward(c.dev, t.dao, nullptr, s.dy, s.ao, p.o, N, x.dl, d, false);
    // The same kernel on the same inputs: the probabilities the forward had.
    if (m.recompute == Recompute::Selective)
      k::attention_forward(c.dev, t.ao, s.att, s.q, s.k, s.v, c.batch, m.seq_len, x.Hl, m.head_dim());
    k::attention_backward(c.dev, s.dq, s.dk, s.dv, t.datt, t.dao, s.att, s.q, s.k, s.v,
                          c.batch, m.seq_len, x.Hl, m.head_dim());
    k::rope_backward(c.dev, s.dq, cos_t, sin_t, c.batch, m.seq_len, x.Hl, m.head_dim());
    k::rope_backward(c.dev, s.dk, cos_t, sin_t, c.batch, m.seq_len, x.Hl, m.head_dim());
    k::linear_backward(c.dev, t.dxn, nullptr, s.dq, s.xn, p.q, N, d, x.dl, false);
    k::linear_backward(c.dev, t.dxn, nullptr, s.dk, s.xn, p.k, N, d, x.dl, true);
    k::linear_backward(c.dev, t.dxn, nullptr, s.dv, s.xn, p.v, N, d, x.dl, true);
  } else {
    k::linear_backward(c.dev, t.dact, nullptr, s.dy, s.act, p.down, N, x.Fl, d, false);
    k::swiglu_backward(c.dev, s.dgate, s.dup, t.dact, s.gate, s.up, size_t(N) * x.Fl);
    k::linear_backward(c.dev, t.dxn, nullptr, s.dgate, s.xn, p.gate, N, d, x.Fl, false);
    k::linear_backward(c.dev, t.dxn, nullptr, s.dup, s.xn, p.up, N, d, x.Fl, true);
  }
  const float* dxn = sum_partials(c, t.dxn, t.dxn_res);
  k::rmsnorm_backward(c.dev, dh, g.norm, dxn, s.h, p.norm, s.rstd, x.Nr, d, sdot);
}

// dL/dx of the loss head input into dx (overwritten, residual rows); saves
// dlogits. Unless sdot is null, sdot = dx · xin per row (the output site's).
static void head_backward(const Chunk& c, HeadActs& h, const float* xin, const int32_t* targets,
                          float loss_scale, float* dx, float* sdot) {
  const ChunkDims& x = c.dims;
  const BackwardScratch& t = c.t;
  k::cross_entropy_backward(c.dev, h.dlogits, h.logits, targets, h.row_max, h.sum_exp, x.N, x.Vl, x.v0,
                            loss_scale);
  k::linear_backward(c.dev, t.dxn, nullptr, h.dlogits, h.xn, c.p.lm_head, x.N, x.d, x.Vl, false);
  const float* dxn = sum_partials(c, t.dxn, t.dxn_res);
  k::rmsnorm_backward(c.dev, dx, c.g.final_norm, dxn, xin, c.p.final_norm, h.rstd, x.Nr, x.d, sdot);
}

// Embedding gradient of this rank's vocabulary rows, from all N token rows.
static void embed_backward(const Chunk& c, const float* dx0, const int32_t* tokens) {
  const ChunkDims& x = c.dims;
  const float* full = dx0;
  if (c.tp.sequence_parallel) gather_rows(c, c.t.full, dx0), full = c.t.full;
  k::embedding_backward(c.dev, c.g.embed, full, tokens, x.N, x.d, c.cfg.vocab_size, x.v0, x.Vl);
}

void chunk_backward_input(const Chunk& c, ChunkActs& a, const int32_t* tokens,
                          const int32_t* targets, float loss_scale, ResidualState& dout,
                          ResidualState& din) {
  const ModelConfig& m = c.cfg;
  const int Nr = c.dims.Nr, d = c.dims.d;
  const size_t Nrd = size_t(Nr) * d;
  ActsView& v = a.v;
  const BackwardScratch& t = c.t;

  if (!m.attnres()) {
    // x_{j+1} = x_j + f_j(x_j): one running gradient, accumulated in place.
    float* dx = dout.hidden ? dout.hidden : t.dx;
    if (c.has_head) head_backward(c, v.head, a.out.hidden, targets, loss_scale, dx, nullptr);
    for (int j = c.last - 1; j >= c.first; --j) {
      SublayerActs& s = v.sub[j - c.first];
      gather_rows(c, s.dy, dx);
      sublayer_backward(c, c.p.sub[j - c.first], c.g.sub[j - c.first], s, j, t.dh, nullptr);
      k::add_inplace(c.dev, dx, t.dh, Nrd);
    }
    if (c.has_embed) embed_backward(c, dx, tokens);
    din = ResidualState{};
    din.hidden = dx;
    return;
  }

  assert(dout.sources.size() == a.out.sources.size());
  const size_t n_site_ptrs = a.site_src.size() / 2;
  size_t site_off = n_site_ptrs;  // walk the recorded sites backwards
  const float* const* sp = nullptr;  // the current site's sources, completed then the partial
  const float* const* rp = nullptr;
  auto next_site = [&](int K) {
    site_off -= size_t(K);
    sp = a.site_src.data() + site_off, rp = a.site_src.data() + n_site_ptrs + site_off;
  };
  // dL/dh and sdot per slot (site_slot), then the output site's (head_slot).
  const int head_slot = pending_site_slots(m);
  float* dh_of[k::kMaxSites + 1];
  float* sdot_of[k::kMaxSites + 1];
  for (int i = 0; i < head_slot + (c.has_head ? 1 : 0); ++i)
    dh_of[i] = t.dh + size_t(i) * Nrd, sdot_of[i] = t.sdot + size_t(i) * Nr;

  // Gradient buffers of every source, and of the running partial sum.
  std::vector<float*> dsrc(dout.sources.begin(), dout.sources.end());
  // Sites whose completed-source terms wait for a pass (backward spans),
  // and the pass over sources [s0, s1) of the current site's list.
  PassSites pending;
  auto source_pass = [&](int s0, int s1) {
    k::attnres_block_backward(c.dev, dsrc.data(), pending.dw, pending.dg, t.dquery, pending.dh, pending.sdot,
                              pending.lse, pending.uv, sp, rp, s1, pending.w, pending.g, pending.S, Nr, d,
                              pending.head, s0, pending.uv_k);
  };
  if (c.has_head) {  // the output site: its partial (the final block sum, its last source) now
    HeadActs& h = v.head;
    const int K = a.site_k.back();
    next_site(K);
    head_backward(c, h, h.h, targets, loss_scale, dh_of[head_slot], sdot_of[head_slot]);
    // The output site's terms are the first each source's gradient gets:
    // written, so the buffers need no zeroing (and are not read).
    k::attnres_partial_backward(c.dev, dsrc[size_t(K - 1)], c.g.out_query, c.g.out_norm, t.dquery, dh_of[head_slot],
                                sdot_of[head_slot], h.lse, sp[K - 1], rp[K - 1], c.p.out_query, c.p.out_norm, Nr, d,
                                true);
    pending.add(dh_of[head_slot], sdot_of[head_slot], h.lse, h.uv, K - 1, c.p.out_query, c.p.out_norm,
                c.g.out_query, c.g.out_norm);
    pending.head = true;
    if (!head_joins_last_group(c)) {  // else with the last group's sites, below
      source_pass(0, K - 1);
      pending = PassSites{};
    }
  }
  // The partial sum after sublayer last-1 is either the chunk's output partial
  // or the last completed source.
  int n_src = int(dsrc.size());
  float* dpart = partial_at(m, c.last) ? dout.partial : dsrc[--n_src];
  for (int j = c.last - 1; j >= c.first; --j) {
    SublayerActs& s = v.sub[j - c.first];
    const SublayerTensors &p = c.p.sub[j - c.first], &g = c.g.sub[j - c.first];
    const int gs = group_start(c, j), slot = site_slot(c, j);
    next_site(a.site_k[j - c.first]);
    gather_rows(c, s.dy, dpart);  // p_j = p_{j-1} + y_j, so dy_j = dp_j
    sublayer_backward(c, p, g, s, j, dh_of[slot], sdot_of[slot]);
    // The site's sources: n_src completed ones, then p_{j-1} (same buffer as dp_j).
    const bool has_part = !m.starts_block(j);
    assert(n_src + (has_part ? 1 : 0) == a.site_k[j - c.first]);
    if (has_part)
      k::attnres_partial_backward(c.dev, dpart, g.res_query, g.res_norm, t.dquery, dh_of[slot], sdot_of[slot], s.lse,
                                  sp[n_src], rp[n_src], p.res_query, p.res_norm, Nr, d, false);
    if (j == gs) {  // the group's sites join the pending ones (ahead of them)
      PassSites group;
      for (int i = gs; i < group_end(c, gs); ++i) {
        const SublayerTensors &pi = c.p.sub[size_t(i - c.first)], &gi = c.g.sub[size_t(i - c.first)];
        const SublayerActs& si = v.sub[size_t(i - c.first)];
        const int at = site_slot(c, i);
        group.add(dh_of[at], sdot_of[at], si.lse, si.uv, n_src, pi.res_query, pi.res_norm, gi.res_query,
                  gi.res_norm);
      }
      group.append(pending);
      pending = group;
      if (slot == 0) {
        // The first group of its span in this chunk (with R = 1, any group):
        // the sources completed inside the span one by one, newest first,
        // then all older ones.
        const int n0 = sources_at(m, span_first(m, gs));
        assert(1 <= n0 && n0 <= n_src);
        for (int s = n_src - 1; s >= n0; --s) source_pass(s, s + 1);
        source_pass(0, n0);
        pending = PassSites{};
      } else {  // the newest source only: the previous block's backward reads its gradient next
        source_pass(n_src - 1, n_src);
      }
    }
    if (m.starts_block(j) && j > c.first) dpart = dsrc[--n_src];  // previous block's sum
  }
  din = ResidualState{};
  din.sources.assign(dsrc.begin(), dsrc.begin() + a.n_in_sources);
  din.partial = partial_at(m, c.first) ? dpart : nullptr;
  if (c.has_embed) embed_backward(c, dsrc[0], tokens);
}

void chunk_backward_weight(const Chunk& c, ChunkActs& a) {
  const ChunkDims& x = c.dims;
  const int N = x.N, d = x.d;
  const ActsView& v = a.v;
  if (c.has_head)
    k::linear_backward(c.dev, nullptr, c.g.lm_head, v.head.dlogits, v.head.xn, nullptr, N, d, x.Vl, false);
  for (int j = c.last - 1; j >= c.first; --j) {
    const SublayerActs& s = v.sub[j - c.first];
    const SublayerTensors& g = c.g.sub[j - c.first];
    if (j % 2 == 0) {
      k::linear_backward(c.dev, nullptr, g.o, s.dy, s.ao, nullptr, N, x.dl, d, false);
      k::linear_backward(c.dev, nullptr, g.q, s.dq, s.xn, nullptr, N, d, x.dl, false);
      k::linear_backward(c.dev, nullptr, g.k, s.dk, s.xn, nullptr, N, d, x.dl, false);
      k::linear_backward(c.dev, nullptr, g.v, s.dv, s.xn, nullptr, N, d, x.dl, false);
    } else {
      k::linear_backward(c.dev, nullptr, g.down, s.dy, s.act, nullptr, N, x.Fl, d, false);
      k::linear_backward(c.dev, nullptr, g.gate, s.dgate, s.xn, nullptr, N, d, x.Fl, false);
      k::linear_backward(c.dev, nullptr, g.up, s.dup, s.xn, nullptr, N, d, x.Fl, false);
    }
  }
}

void chunk_reduce_replicated_grads(Chunk& c) {
  if (!c.tp.sequence_parallel) return;
  for (const TensorSpec& t : c.layout.tensors)
    if (!t.sharded()) c.tp.coll->allreduce_sum(c.grads.data() + t.offset, t.numel);
}

}  // namespace attnres
