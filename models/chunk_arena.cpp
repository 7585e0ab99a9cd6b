#include "models/chunk_parts.h"

#include <algorithm>
#include <cassert>
#include <vector>

#include "kernels/ops.h"

namespace attnres {

namespace k = kernels;

// Sources seen by the AttnRes site of sublayer j: completed ones plus the partial.
static int site_sources(const ModelConfig& cfg, int j) {
  return sources_at(cfg, j) + (partial_at(cfg, j) ? 1 : 0);
}

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
  k::bf16* take_bf16(size_t n) { return reinterpret_cast<k::bf16*>(take((n + 1) / 2)); }
  // A GEMM operand: kept in float in an fp32 run, as its bf16 twin in a bf16
  // run (acts_init points the float field at scratch).
  void operand(bool bf16, float*& f, k::bf16*& h, size_t n) {
    if (bf16) h = take_bf16(n);
    else f = take(n);
  }
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
// What an attention sublayer keeps for its backward: the probabilities
// [b, Hl, T, T], or under flash attention the log-sum-exp [b, Hl, T].
static size_t attention_kept_floats(const Shape& sh) {
  const size_t rows = size_t(sh.batch) * sh.dims.Hl * sh.m.seq_len;
  return sh.m.flash() ? rows : rows * sh.m.seq_len;
}

static ActsView carve_acts(const Shape& sh, float* base, size_t* total) {
  const ModelConfig& m = sh.m;
  const ChunkDims& x = sh.dims;
  const size_t N = size_t(x.N), Nr = size_t(x.Nr), d = size_t(x.d), dl = size_t(x.dl), Fl = size_t(x.Fl);
  const size_t att = attention_kept_floats(sh);
  const bool lo = m.bf16();
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
    cv.operand(lo, s.xn, s.xn_h, N * d);
    s.rstd = cv.take(Nr);
    s.y = cv.take(Nr * d);
    cv.operand(lo, s.dy, s.dy_h, N * d);
    if (j % 2 == 0) {
      s.q = cv.take(N * dl), s.k = cv.take(N * dl), s.v = cv.take(N * dl);
      // Selective recomputation keeps no probabilities: acts_init points att at scratch.
      s.att = m.recomputes_attention() ? nullptr : cv.take(att);
      cv.operand(lo, s.ao, s.ao_h, N * dl);
      cv.operand(lo, s.dq, s.dq_h, N * dl), cv.operand(lo, s.dk, s.dk_h, N * dl);
      cv.operand(lo, s.dv, s.dv_h, N * dl);
    } else {
      s.gate = cv.take(N * Fl), s.up = cv.take(N * Fl);
      cv.operand(lo, s.act, s.act_h, N * Fl);
      cv.operand(lo, s.dgate, s.dgate_h, N * Fl), cv.operand(lo, s.dup, s.dup_h, N * Fl);
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
    cv.operand(lo, h.xn, h.xn_h, N * d);
    h.rstd = cv.take(Nr);
    h.logits = cv.take(N * x.Vl);
    cv.operand(lo, h.dlogits, h.dlogits_h, N * x.Vl);
    h.losses = cv.take(N);
    h.row_max = cv.take(N);
    h.sum_exp = cv.take(2 * N);  // + target_logit: one all-reduce for both
    h.target_logit = h.sum_exp ? h.sum_exp + N : nullptr;
  }
  if (total) *total = cv.used;
  return v;
}

// The backward's dL/dh and sdot slots: the pending sites', then the output site's.
static int backward_site_slots(const Shape& sh) {
  return pending_site_slots(sh.m) + (sh.m.attnres() && sh.has_head() ? 1 : 0);
}

BackwardScratch carve_scratch(const Shape& sh, float* base, size_t* total) {
  const ModelConfig& m = sh.m;
  const ChunkDims& x = sh.dims;
  const size_t N = size_t(x.N), Nr = size_t(x.Nr), d = size_t(x.d);
  const int G = backward_site_slots(sh);
  const bool sp = x.Nr != x.N;
  Carver cv{base};
  BackwardScratch s{};
  s.dh = cv.take(size_t(G) * Nr * d), s.dxn = cv.take(N * d);
  s.dao = cv.take(N * x.dl), s.dact = cv.take(N * x.Fl), s.dx = cv.take(Nr * d);
  s.datt = cv.take(attention_kept_floats(sh));  // flash: delta, one float per query row
  if (m.recomputes_attention()) s.att = cv.take(attention_kept_floats(sh)), s.ao = cv.take(N * x.dl);
  if (m.attnres()) {
    s.sdot = cv.take(size_t(G) * Nr);
    s.dquery = cv.take(std::max(k::attnres_block_backward_scratch(x.Nr, G, x.d),
                                k::attnres_partial_backward_scratch(x.Nr, x.d)));
  }
  if (sp) s.dxn_res = cv.take(Nr * d), s.full = cv.take(N * d), s.local = cv.take(Nr * d);
  if (m.bf16()) {
    const size_t dl = size_t(x.dl), Fl = size_t(x.Fl);
    s.xn = cv.take(N * d), s.dy = cv.take(N * d);
    s.ao = s.ao ? s.ao : cv.take(N * dl);  // selective recomputation's discarded output serves
    s.dq = cv.take(N * dl), s.dk = cv.take(N * dl), s.dv = cv.take(N * dl);
    s.act = cv.take(N * Fl), s.dgate = cv.take(N * Fl), s.dup = cv.take(N * Fl);
    s.dlogits = sh.has_head() ? cv.take(N * size_t(x.Vl)) : nullptr;
    if (sp) s.local_h = cv.take_bf16(Nr * d);
  }
  if (total) *total = cv.used;
  return s;
}

ChunkFloats chunk_floats(const ModelConfig& cfg, int first, int last, int micro_batch,
                         const TensorParallel& tp) {
  assert(0 <= first && first < last && last <= cfg.num_sublayers() && micro_batch > 0);
  const Shape sh{cfg, first, last, micro_batch, chunk_dims(cfg, micro_batch, tp)};
  ChunkFloats f;
  const ParamLayout layout = make_param_layout(cfg, first, last, tp.tp);
  f.grads = layout.total;
  f.params = cfg.bf16() ? 0 : layout.total;
  f.compute_weights = cfg.bf16() ? layout.total : 0;
  f.widened = cfg.bf16() ? widened_offsets(layout).back() : 0;
  f.rope = 2 * (size_t(cfg.seq_len) * cfg.head_dim() / 2);
  carve_scratch(sh, nullptr, &f.scratch);
  carve_acts(sh, nullptr, &f.acts);
  return f;
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
  if (c.cfg.recomputes_attention())
    for (int j = c.first; j < c.last; ++j)
      if (j % 2 == 0) a.v.sub[size_t(j - c.first)].att = c.t.att;
  if (c.cfg.bf16()) {  // the float values of the bf16-kept operands live in scratch
    const BackwardScratch& t = c.t;
    for (SublayerActs& s : a.v.sub) {
      s.xn = t.xn, s.dy = t.dy;
      s.ao = t.ao, s.dq = t.dq, s.dk = t.dk, s.dv = t.dv;
      s.act = t.act, s.dgate = t.dgate, s.dup = t.dup;
    }
    a.v.head.xn = t.xn, a.v.head.dlogits = t.dlogits;
  }
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

}  // namespace attnres
