#include "models/chunk.h"

#include <cassert>
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
  bool has_embed() const { return first == 0; }
  bool has_head() const { return last == m.num_sublayers(); }
};

// Standard mode: sublayer `first` of a chunk without the embedding reads the
// incoming hidden state, which changes per forward; its pointer stays null
// here and chunk_forward sets it.
static ActsView carve_acts(const Shape& sh, float* base, size_t* total) {
  const ModelConfig& m = sh.m;
  const size_t N = size_t(sh.batch) * m.seq_len, d = m.d_model, F = m.d_ff;
  const size_t att = size_t(sh.batch) * m.n_heads * m.seq_len * m.seq_len;
  Carver cv{base};
  ActsView v{};
  v.x0 = sh.has_embed() ? cv.take(N * d) : nullptr;
  v.in_rstd = m.attnres() ? cv.take(N * (sources_at(m, sh.first) + 1)) : nullptr;
  for (int j = sh.first; j < sh.last; ++j) {
    SublayerActs s{};
    if (m.attnres()) {
      s.h = cv.take(N * d);
      s.alpha = cv.take(N * site_sources(m, j));
      s.uv = cv.take(N * site_sources(m, j));
      s.prstd = cv.take(N);
      // A block's first partial sum is y itself; later ones need their own buffer.
      s.stream = m.starts_block(j) ? nullptr : cv.take(N * d);
    } else {
      s.stream = cv.take(N * d);
    }
    s.xn = cv.take(N * d);
    s.rstd = cv.take(N);
    s.y = cv.take(N * d);
    s.dy = cv.take(N * d);
    if (j % 2 == 0) {
      s.q = cv.take(N * d), s.k = cv.take(N * d), s.v = cv.take(N * d);
      s.att = cv.take(att), s.ao = cv.take(N * d);
      s.dq = cv.take(N * d), s.dk = cv.take(N * d), s.dv = cv.take(N * d);
    } else {
      s.gate = cv.take(N * F), s.up = cv.take(N * F), s.act = cv.take(N * F);
      s.dgate = cv.take(N * F), s.dup = cv.take(N * F);
    }
    if (m.attnres() && m.starts_block(j)) s.stream = s.y;
    // Standard mode: a sublayer's input is the previous stream tensor.
    if (!m.attnres()) s.h = j > sh.first ? v.sub.back().stream : sh.has_embed() ? v.x0 : nullptr;
    v.sub.push_back(s);
  }
  if (sh.has_head()) {
    HeadActs& h = v.head;
    if (m.attnres()) {
      h.h = cv.take(N * d);
      h.alpha = cv.take(N * sources_at(m, m.num_sublayers()));
      h.uv = cv.take(N * sources_at(m, m.num_sublayers()));
    }
    h.xn = cv.take(N * d);
    h.rstd = cv.take(N);
    h.logits = cv.take(N * m.vocab_size);
    h.dlogits = cv.take(N * m.vocab_size);
    h.losses = cv.take(N);
  }
  if (total) *total = cv.used;
  return v;
}

// Scratch shared by all microbatches of a chunk: one backward at a time.
static BackwardScratch carve_scratch(const Shape& sh, float* base, size_t* total) {
  const ModelConfig& m = sh.m;
  const size_t N = size_t(sh.batch) * m.seq_len, d = m.d_model, F = m.d_ff;
  const int kmax = m.attnres() ? sources_at(m, m.num_sublayers()) + 1 : 1;
  Carver cv{base};
  BackwardScratch s{};
  s.dh = cv.take(N * d), s.dxn = cv.take(N * d);
  s.dao = cv.take(N * d), s.dact = cv.take(N * F), s.dx = cv.take(N * d);
  s.datt = cv.take(size_t(sh.batch) * m.n_heads * m.seq_len * m.seq_len);
  s.dalpha = cv.take(k::attnres_backward_scratch(int(N), kmax, int(d)));
  if (total) *total = cv.used;
  return s;
}

ChunkFloats chunk_floats(const ModelConfig& cfg, int first, int last, int micro_batch) {
  assert(0 <= first && first < last && last <= cfg.num_sublayers() && micro_batch > 0);
  const Shape sh{cfg, first, last, micro_batch};
  ChunkFloats f;
  f.params = f.grads = make_param_layout(cfg, first, last).total;
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
                uint64_t seed, k::Device dev) {
  const ChunkFloats f = chunk_floats(cfg, first, last, batch);
  c.cfg = cfg;
  c.dev = dev;
  c.first = first, c.last = last, c.batch = batch;
  c.has_embed = first == 0;
  c.has_head = last == cfg.num_sublayers();
  c.layout = make_param_layout(cfg, first, last);
  c.params = k::DeviceBuffer<float>(dev, f.params);
  c.grads = k::DeviceBuffer<float>(dev, f.grads);
  c.rope_cos = k::DeviceBuffer<float>(dev, f.rope / 2);
  c.rope_sin = k::DeviceBuffer<float>(dev, f.rope / 2);
  c.scratch = k::DeviceBuffer<float>(dev, f.scratch);
  c.p = resolve(c.layout, c.params.data(), first, last);
  c.g = resolve(c.layout, c.grads.data(), first, last);
  c.t = carve_scratch({cfg, first, last, batch}, c.scratch.data(), nullptr);

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

void acts_init(ChunkActs& a, const Chunk& c) {
  const Shape sh{c.cfg, c.first, c.last, c.batch};
  size_t floats = 0;
  carve_acts(sh, nullptr, &floats);
  a.arena = k::DeviceBuffer<float>(c.dev, floats);
  a.v = carve_acts(sh, a.arena.data(), nullptr);
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

// ---- forward -------------------------------------------------------------------
static void sublayer_forward(const Chunk& c, const SublayerTensors& p, SublayerActs& s, int j) {
  const ModelConfig& m = c.cfg;
  const int N = c.batch * m.seq_len, d = m.d_model, F = m.d_ff;
  k::rmsnorm_forward(c.dev, s.xn, s.rstd, s.h, p.norm, N, d, m.norm_eps);
  if (j % 2 == 0) {
    const float *cos_t = c.rope_cos.data(), *sin_t = c.rope_sin.data();
    k::linear_forward(c.dev, s.q, s.xn, p.q, N, d, d);
    k::linear_forward(c.dev, s.k, s.xn, p.k, N, d, d);
    k::linear_forward(c.dev, s.v, s.xn, p.v, N, d, d);
    k::rope_forward(c.dev, s.q, cos_t, sin_t, c.batch, m.seq_len, m.n_heads, m.head_dim());
    k::rope_forward(c.dev, s.k, cos_t, sin_t, c.batch, m.seq_len, m.n_heads, m.head_dim());
    k::attention_forward(c.dev, s.ao, s.att, s.q, s.k, s.v, c.batch, m.seq_len, m.n_heads, m.head_dim());
    k::linear_forward(c.dev, s.y, s.ao, p.o, N, d, d);
  } else {
    k::linear_forward(c.dev, s.gate, s.xn, p.gate, N, d, F);
    k::linear_forward(c.dev, s.up, s.xn, p.up, N, d, F);
    k::swiglu_forward(c.dev, s.act, s.gate, s.up, size_t(N) * F);
    k::linear_forward(c.dev, s.y, s.act, p.down, N, F, d);
  }
}

// Loss head: [AttnRes_out] -> final norm -> LM head -> cross-entropy. Returns the loss sum.
static double head_forward(const Chunk& c, HeadActs& h, const float* x, const int32_t* targets) {
  const ModelConfig& m = c.cfg;
  const int N = c.batch * m.seq_len, d = m.d_model, V = m.vocab_size;
  k::rmsnorm_forward(c.dev, h.xn, h.rstd, x, c.p.final_norm, N, d, m.norm_eps);
  k::linear_forward(c.dev, h.logits, h.xn, c.p.lm_head, N, d, V);
  k::cross_entropy_forward(c.dev, h.losses, h.logits, targets, N, V);
  return k::sum(c.dev, h.losses, size_t(N));
}

double chunk_forward(const Chunk& c, ChunkActs& a, const int32_t* tokens,
                     const int32_t* targets, const ResidualState& in) {
  const ModelConfig& m = c.cfg;
  const int N = c.batch * m.seq_len, d = m.d_model;
  ActsView& v = a.v;
  if (c.has_embed) k::embedding_forward(c.dev, v.x0, tokens, c.p.embed, N, d);

  if (!m.attnres()) {
    if (!c.has_embed) v.sub[0].h = in.hidden;  // the only pointer that changes per forward
    const float* x = v.sub[0].h;
    for (int j = c.first; j < c.last; ++j) {
      SublayerActs& s = v.sub[j - c.first];
      sublayer_forward(c, c.p.sub[j - c.first], s, j);
      k::add(c.dev, s.stream, x, s.y, size_t(N) * d);
      x = s.stream;
    }
    a.out = ResidualState{};
    a.out.hidden = const_cast<float*>(x);
    return c.has_head ? head_forward(c, v.head, x, targets) : 0.0;
  }

  // AttnRes: the completed sources and their key-side rstd rows.
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
    k::rms_inverse(c.dev, v.in_rstd + size_t(s) * N, src[s], N, d, m.norm_eps);
    rstd.push_back(v.in_rstd + size_t(s) * N);
  }
  float* part = c.has_embed ? nullptr : in.partial;
  const float* part_rstd = nullptr;
  if (part) {
    float* r = v.in_rstd + size_t(a.n_in_sources) * N;
    k::rms_inverse(c.dev, r, part, N, d, m.norm_eps);
    part_rstd = r;
  }

  size_t site_off = 0;
  const size_t n_site_ptrs = a.site_src.size() / 2;
  auto gather = [&](int K) {  // record the site's sources for backward
    float** sp = a.site_src.data() + site_off;
    float** rp = a.site_src.data() + n_site_ptrs + site_off;
    for (int s = 0; s < int(src.size()); ++s) sp[s] = src[s], rp[s] = const_cast<float*>(rstd[s]);
    if (part) sp[src.size()] = part, rp[src.size()] = const_cast<float*>(part_rstd);
    assert(int(src.size()) + (part ? 1 : 0) == K);
    site_off += size_t(K);
    return std::pair<const float* const*, const float* const*>{sp, rp};
  };

  for (int j = c.first; j < c.last; ++j) {
    SublayerActs& s = v.sub[j - c.first];
    const SublayerTensors& p = c.p.sub[j - c.first];
    if (j > c.first && m.starts_block(j)) {  // the finished block becomes a source
      src.push_back(part), rstd.push_back(part_rstd);
      part = nullptr, part_rstd = nullptr;
    }
    const int K = a.site_k[j - c.first];
    auto [sp, rp] = gather(K);
    k::attnres_forward(c.dev, s.h, s.alpha, s.uv, sp, rp, K, p.res_query, p.res_norm, N, d);
    sublayer_forward(c, p, s, j);
    if (part) k::add(c.dev, s.stream, part, s.y, size_t(N) * d);  // else stream == y
    k::rms_inverse(c.dev, s.prstd, s.stream, N, d, m.norm_eps);
    part = s.stream, part_rstd = s.prstd;
  }
  if (!partial_at(m, c.last)) {  // the chunk ends on a block boundary (or at L)
    src.push_back(part), rstd.push_back(part_rstd);
    part = nullptr;
  }
  a.out.partial = part;
  a.out.hidden = nullptr;
  if (!c.has_head) return 0.0;
  HeadActs& h = v.head;
  const int K = a.site_k.back();
  auto [sp, rp] = gather(K);
  k::attnres_forward(c.dev, h.h, h.alpha, h.uv, sp, rp, K, c.p.out_query, c.p.out_norm, N, d);
  return head_forward(c, h, h.h, targets);
}

const float* chunk_token_losses(const Chunk& c, const ChunkActs& a) {
  assert(c.has_head);
  return a.v.head.losses;
}

// ---- backward ------------------------------------------------------------------
// dL/dh of one sublayer from dL/dy (s.dy); saves what the weight pass needs.
static void sublayer_backward(const Chunk& c, const SublayerTensors& p, const SublayerTensors& g,
                              SublayerActs& s, int j, float* dh) {
  const BackwardScratch& t = c.t;
  const ModelConfig& m = c.cfg;
  const int N = c.batch * m.seq_len, d = m.d_model, F = m.d_ff;
  if (j % 2 == 0) {
    const float *cos_t = c.rope_cos.data(), *sin_t = c.rope_sin.data();
    k::linear_backward(c.dev, t.dao, nullptr, s.dy, s.ao, p.o, N, d, d, false);
    k::attention_backward(c.dev, s.dq, s.dk, s.dv, t.datt, t.dao, s.att, s.q, s.k, s.v,
                          c.batch, m.seq_len, m.n_heads, m.head_dim());
    k::rope_backward(c.dev, s.dq, cos_t, sin_t, c.batch, m.seq_len, m.n_heads, m.head_dim());
    k::rope_backward(c.dev, s.dk, cos_t, sin_t, c.batch, m.seq_len, m.n_heads, m.head_dim());
    k::linear_backward(c.dev, t.dxn, nullptr, s.dq, s.xn, p.q, N, d, d, false);
    k::linear_backward(c.dev, t.dxn, nullptr, s.dk, s.xn, p.k, N, d, d, true);
    k::linear_backward(c.dev, t.dxn, nullptr, s.dv, s.xn, p.v, N, d, d, true);
  } else {
    k::linear_backward(c.dev, t.dact, nullptr, s.dy, s.act, p.down, N, F, d, false);
    k::swiglu_backward(c.dev, s.dgate, s.dup, t.dact, s.gate, s.up, size_t(N) * F);
    k::linear_backward(c.dev, t.dxn, nullptr, s.dgate, s.xn, p.gate, N, d, F, false);
    k::linear_backward(c.dev, t.dxn, nullptr, s.dup, s.xn, p.up, N, d, F, true);
  }
  k::rmsnorm_backward(c.dev, dh, g.norm, t.dxn, s.h, p.norm, s.rstd, N, d);
}

// dL/dx of the loss head input into dx (overwritten); saves dlogits.
static void head_backward(const Chunk& c, HeadActs& h, const float* x, const int32_t* targets,
                          float loss_scale, float* dx) {
  const ModelConfig& m = c.cfg;
  const int N = c.batch * m.seq_len, d = m.d_model, V = m.vocab_size;
  const BackwardScratch& t = c.t;
  k::cross_entropy_backward(c.dev, h.dlogits, h.logits, targets, N, V, loss_scale);
  k::linear_backward(c.dev, t.dxn, nullptr, h.dlogits, h.xn, c.p.lm_head, N, d, V, false);
  k::rmsnorm_backward(c.dev, dx, c.g.final_norm, t.dxn, x, c.p.final_norm, h.rstd, N, d);
}

void chunk_backward_input(const Chunk& c, ChunkActs& a, const int32_t* tokens,
                          const int32_t* targets, float loss_scale, ResidualState& dout,
                          ResidualState& din) {
  const ModelConfig& m = c.cfg;
  const int N = c.batch * m.seq_len, d = m.d_model;
  const size_t Nd = size_t(N) * d;
  ActsView& v = a.v;
  const BackwardScratch& t = c.t;

  if (!m.attnres()) {
    // x_{j+1} = x_j + f_j(x_j): one running gradient, accumulated in place.
    float* dx = dout.hidden ? dout.hidden : t.dx;
    if (c.has_head) head_backward(c, v.head, a.out.hidden, targets, loss_scale, dx);
    for (int j = c.last - 1; j >= c.first; --j) {
      SublayerActs& s = v.sub[j - c.first];
      k::copy(c.dev, s.dy, dx, Nd, k::CopyKind::DeviceToDevice);
      sublayer_backward(c, c.p.sub[j - c.first], c.g.sub[j - c.first], s, j, t.dh);
      k::add_inplace(c.dev, dx, t.dh, Nd);
    }
    if (c.has_embed) k::embedding_backward(c.dev, c.g.embed, dx, tokens, N, d, m.vocab_size);
    din = ResidualState{};
    din.hidden = dx;
    return;
  }

  assert(dout.sources.size() == a.out.sources.size());
  const size_t n_site_ptrs = a.site_src.size() / 2;
  size_t site_off = n_site_ptrs;  // walk the sites backwards
  auto site_backward = [&](int K, const float* dh, const float* alpha, const float* uv, const float* w,
                           const float* g, float* dw, float* dg, float** dsrc) {
    site_off -= size_t(K);
    const float* const* sp = a.site_src.data() + site_off;
    const float* const* rp = a.site_src.data() + n_site_ptrs + site_off;
    k::attnres_backward(c.dev, dsrc, dw, dg, t.dalpha, dh, alpha, uv, sp, rp, K, w, g, N, d);
  };

  // Gradient buffers of every source, and of the running partial sum.
  std::vector<float*> dsrc(dout.sources.begin(), dout.sources.end());
  if (c.has_head) {
    HeadActs& h = v.head;
    head_backward(c, h, h.h, targets, loss_scale, t.dh);
    const int K = a.site_k.back();
    site_backward(K, t.dh, h.alpha, h.uv, c.p.out_query, c.p.out_norm, c.g.out_query, c.g.out_norm,
                  dsrc.data());
  }
  // The partial sum after sublayer last-1 is either the chunk's output partial
  // or the last completed source.
  int n_src = int(dsrc.size());
  float* dpart = partial_at(m, c.last) ? dout.partial : dsrc[--n_src];
  std::vector<float*> site_grads;
  for (int j = c.last - 1; j >= c.first; --j) {
    SublayerActs& s = v.sub[j - c.first];
    const SublayerTensors &p = c.p.sub[j - c.first], &g = c.g.sub[j - c.first];
    k::copy(c.dev, s.dy, dpart, Nd, k::CopyKind::DeviceToDevice);  // p_j = p_{j-1} + y_j, so dy_j = dp_j
    sublayer_backward(c, p, g, s, j, t.dh);
    // The site's sources: n_src completed ones, then p_{j-1} (same buffer as dp_j).
    const int K = a.site_k[j - c.first];
    site_grads.assign(dsrc.begin(), dsrc.begin() + n_src);
    if (!m.starts_block(j)) site_grads.push_back(dpart);
    assert(int(site_grads.size()) == K);
    site_backward(K, t.dh, s.alpha, s.uv, p.res_query, p.res_norm, g.res_query, g.res_norm,
                  site_grads.data());
    if (m.starts_block(j) && j > c.first) dpart = dsrc[--n_src];  // previous block's sum
  }
  din = ResidualState{};
  din.sources.assign(dsrc.begin(), dsrc.begin() + a.n_in_sources);
  din.partial = partial_at(m, c.first) ? dpart : nullptr;
  if (c.has_embed) k::embedding_backward(c.dev, c.g.embed, dsrc[0], tokens, N, d, m.vocab_size);
}

void chunk_backward_weight(const Chunk& c, ChunkActs& a) {
  const ModelConfig& m = c.cfg;
  const int N = c.batch * m.seq_len, d = m.d_model, F = m.d_ff;
  const ActsView& v = a.v;
  if (c.has_head)
    k::linear_backward(c.dev, nullptr, c.g.lm_head, v.head.dlogits, v.head.xn, nullptr, N, d, m.vocab_size, false);
  for (int j = c.last - 1; j >= c.first; --j) {
    const SublayerActs& s = v.sub[j - c.first];
    const SublayerTensors& g = c.g.sub[j - c.first];
    if (j % 2 == 0) {
      k::linear_backward(c.dev, nullptr, g.o, s.dy, s.ao, nullptr, N, d, d, false);
      k::linear_backward(c.dev, nullptr, g.q, s.dq, s.xn, nullptr, N, d, d, false);
      k::linear_backward(c.dev, nullptr, g.k, s.dk, s.xn, nullptr, N, d, d, false);
      k::linear_backward(c.dev, nullptr, g.v, s.dv, s.xn, nullptr, N, d, d, false);
    } else {
      k::linear_backward(c.dev, nullptr, g.down, s.dy, s.act, nullptr, N, F, d, false);
      k::linear_backward(c.dev, nullptr, g.gate, s.dgate, s.xn, nullptr, N, d, F, false);
      k::linear_backward(c.dev, nullptr, g.up, s.dup, s.xn, nullptr, N, d, F, false);
    }
  }
}

}  // namespace attnres
