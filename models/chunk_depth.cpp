#include "models/chunk_parts.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <vector>

#include "kernels/ops.h"

namespace attnres {

namespace k = kernels;

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
// Sites of an AttnRes group: the most a group of this chunk holds.
static int max_group_sites(const ModelConfig& m) { return m.attnres() ? std::min(m.block_size, k::kMaxSites) : 1; }
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
// R: as many blocks as fit with the output site in one pass
// (R·S + 1 <= kMaxSites), at most 4.
static int span_blocks(const ModelConfig& m) {
  return m.attnres() ? std::clamp((k::kMaxSites - 1) / m.block_size, 1, 4) : 1;
}
static int span_first(const ModelConfig& m, int j) {
  const int R = span_blocks(m);
  return m.block_of(j) / R * R * m.block_size;
}
// The slot of site j's dh and sdot: its index in its group (R = 1) or in
// its span's part of the chunk.
static int site_slot(const Chunk& c, int j) {
  return j - (span_blocks(c.cfg) == 1 ? group_start(c, j) : std::max(c.first, span_first(c.cfg, j)));
}
int pending_site_slots(const ModelConfig& m) {
  return span_blocks(m) == 1 ? max_group_sites(m) : span_blocks(m) * m.block_size;
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
  s.add(h.h, h.lse, h.uv, c.p.out_query.f, c.p.out_norm.f);
}
// Sites [start, end), and the output site if it joins them.
static GroupSites group_sites(const Chunk& c, const ActsView& v, int start, int end) {
  GroupSites s;
  for (int i = start; i < end; ++i) {
    const SublayerActs& a = v.sub[size_t(i - c.first)];
    const SublayerWeights& p = c.p.sub[size_t(i - c.first)];
    s.add(a.h, a.lse, a.uv, p.res_query.f, p.res_norm.f);
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

void attnres_forward(const Chunk& c, ChunkActs& a, const int32_t* targets, const ResidualState& in, double* loss) {
  const ModelConfig& m = c.cfg;
  const int Nr = c.dims.Nr, d = c.dims.d;
  ActsView& v = a.v;
  // The completed sources and their key-side rstd rows. The depth attention
  // is token-local: it runs on the residual rows, no communication.
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
    const SublayerWeights& p = c.p.sub[j - c.first];
    if (j > c.first && m.starts_block(j)) {  // the finished block becomes a source
      src.push_back(part), rstd.push_back(part_rstd);
      part = nullptr, part_rstd = nullptr;
    }
    if (j == group_start(c, j)) completed_phase(group_sites(c, v, j, group_end(c, j)), int(src.size()));
    record(a.site_k[j - c.first]);
    if (part)
      merge_norm_to_full(c, s.xn, s.xn_h, s.rstd, s.h, s.lse, part, part_rstd, p.res_query.f, p.res_norm.f, p.norm.f);
    else
      norm_to_full(c, s.xn, s.xn_h, s.rstd, s.h, p.norm.f);
    sublayer_forward(c, p, s, j);
    if (part)
      k::add_rms_inverse(c.dev, s.stream, s.prstd, part, s.y, Nr, d, m.norm_eps, m.bf16());
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
  if (!c.has_head) return;
  // The output site: phase 1 (with the last group, or now), then its
  // partial, the final block sum (src's last entry), merged in.
  HeadActs& h = v.head;
  record(a.site_k.back());
  if (!head_joins_last_group(c)) {
    GroupSites head;
    add_head_site(head, c, h);
    completed_phase(head, int(src.size()) - 1);
  }
  merge_norm_to_full(c, h.xn, h.xn_h, h.rstd, h.h, h.lse, src.back(), rstd.back(), c.p.out_query.f, c.p.out_norm.f,
                     c.p.final_norm.f);
  head_forward(c, h, targets, loss);
}

std::vector<float> chunk_site_weights(const Chunk& c, const ChunkActs& a, int site, int rows) {
  const int d = c.dims.d, K = a.site_k[size_t(site)];
  const bool head = site == c.last - c.first;
  size_t off = 0;
  for (int i = 0; i < site; ++i) off += size_t(a.site_k[size_t(i)]);
  const size_t n_site_ptrs = a.site_src.size() / 2;
  const float* w = head ? c.p.out_query.f : c.p.sub[size_t(site)].res_query.f;
  const float* g = head ? c.p.out_norm.f : c.p.sub[size_t(site)].res_norm.f;
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

void attnres_backward_input(const Chunk& c, ChunkActs& a, const int32_t* tokens, const int32_t* targets,
                            float loss_scale, ResidualState& dout, ResidualState& din) {
  const ModelConfig& m = c.cfg;
  const int Nr = c.dims.Nr, d = c.dims.d;
  const size_t Nrd = size_t(Nr) * d;
  ActsView& v = a.v;
  const BackwardScratch& t = c.t;
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
                              pending.head, s0, pending.uv_k, m.bf16());
  };
  if (c.has_head) {  // the output site: its partial (the final block sum, its last source) now
    HeadActs& h = v.head;
    const int K = a.site_k.back();
    next_site(K);
    head_backward(c, h, h.h, targets, loss_scale, dh_of[head_slot], sdot_of[head_slot]);
    // The output site's terms are the first each source's gradient gets:
    // written, so the buffers need no zeroing (and are not read).
    k::attnres_partial_backward(c.dev, dsrc[size_t(K - 1)], c.g.out_query, c.g.out_norm, t.dquery, dh_of[head_slot],
                                sdot_of[head_slot], h.lse, sp[K - 1], rp[K - 1], c.p.out_query.f, c.p.out_norm.f, Nr, d,
                                true, m.bf16());
    pending.add(dh_of[head_slot], sdot_of[head_slot], h.lse, h.uv, K - 1, c.p.out_query.f, c.p.out_norm.f,
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
    const SublayerWeights& p = c.p.sub[j - c.first];
    const SublayerTensors& g = c.g.sub[j - c.first];
    const int gs = group_start(c, j), slot = site_slot(c, j);
    next_site(a.site_k[j - c.first]);
    gather_dy(c, s, dpart);  // p_j = p_{j-1} + y_j, so dy_j = dp_j
    sublayer_backward(c, p, g, s, j, dh_of[slot], sdot_of[slot]);
    // The site's sources: n_src completed ones, then p_{j-1} (same buffer as dp_j).
    const bool has_part = !m.starts_block(j);
    assert(n_src + (has_part ? 1 : 0) == a.site_k[j - c.first]);
    if (has_part)
      k::attnres_partial_backward(c.dev, dpart, g.res_query, g.res_norm, t.dquery, dh_of[slot], sdot_of[slot], s.lse,
                                  sp[n_src], rp[n_src], p.res_query.f, p.res_norm.f, Nr, d, false, m.bf16());
    if (j == gs) {  // the group's sites join the pending ones (ahead of them)
      PassSites group;
      for (int i = gs; i < group_end(c, gs); ++i) {
        const SublayerWeights& pi = c.p.sub[size_t(i - c.first)];
        const SublayerTensors& gi = c.g.sub[size_t(i - c.first)];
        const SublayerActs& si = v.sub[size_t(i - c.first)];
        const int at = site_slot(c, i);
        group.add(dh_of[at], sdot_of[at], si.lse, si.uv, n_src, pi.res_query.f, pi.res_norm.f, gi.res_query,
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

}  // namespace attnres
