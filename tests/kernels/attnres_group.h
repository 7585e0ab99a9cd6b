// A group of S AttnRes sites sharing K completed sources, each site with a
// partial block sum of its own (site 0 optionally without, as at a block's
// start), run through the two-phase kernels the way models/chunk_depth.cpp
// does: phase 1 for the group, then each site's merge; backwards, each
// site's partial part in reverse order, then the group's completed part.
#pragma once
#include <algorithm>
#include <limits>
#include <vector>

#include "kernels/ops.h"
#include "kernels/rowops.h"
#include "reference_ops.h"

namespace attnres::kernels::testing {

struct SiteGroup {
  int K = 0, S = 0, N = 0, d = 0;
  bool first_partial = true;
  std::vector<Vec> src, rstd;        // K completed sources and their rms_inverse
  std::vector<Vec> part, part_rstd;  // per site: its partial source (empty when none)
  std::vector<Vec> w, g;             // per site: query and key-norm gain
  bool has_part(int j) const { return j > 0 || first_partial; }
};

// Sources of growing scale, as block sums grow with depth; non-zero queries.
inline SiteGroup make_site_group(int K, int S, int N, int d, bool first_partial, uint32_t seed) {
  const Device dev;
  SiteGroup G{K, S, N, d, first_partial, {}, {}, {}, {}, {}, {}};
  auto source = [&](uint32_t sd, float scale, Vec& v, Vec& r) {
    v = random_vec(size_t(N) * d, sd, -scale, scale);
    r.assign(size_t(N), 0.0f);
    rms_inverse(dev, r.data(), v.data(), N, d, 1e-6f);
  };
  G.src.resize(K), G.rstd.resize(K), G.part.resize(S), G.part_rstd.resize(S);
  for (int s = 0; s < K; s++) source(seed + s, 1.0f + s, G.src[s], G.rstd[s]);
  for (int j = 0; j < S; j++) {
    if (G.has_part(j)) source(seed + 50 + j, 1.5f, G.part[j], G.part_rstd[j]);
    G.w.push_back(random_vec(d, seed + 100 + j, -1.0f, 1.0f));
    G.g.push_back(random_vec(d, seed + 150 + j, 0.5f, 1.5f));
  }
  return G;
}

// The data pointers of a list of vectors.
template <class T, class Vs>
std::vector<T*> pointers(Vs& v) {
  std::vector<T*> p;
  for (auto& x : v) p.push_back(x.data());
  return p;
}

// h[j] [N, d], lse[j] [N] and uv[j] [N, K] of every site.
inline void group_forward(const Device& dev, const SiteGroup& G, std::vector<Vec>& h, std::vector<Vec>& lse,
                          std::vector<Vec>& uv) {
  h.assign(G.S, Vec(size_t(G.N) * G.d));
  lse.assign(G.S, Vec(size_t(G.N)));
  uv.assign(G.S, Vec(size_t(G.N) * G.K));
  const auto hp = pointers<float>(h), lp = pointers<float>(lse), up = pointers<float>(uv);
  const auto sp = pointers<const float>(G.src), rp = pointers<const float>(G.rstd);
  const auto wp = pointers<const float>(G.w), gp = pointers<const float>(G.g);
  attnres_block_forward(dev, hp.data(), lp.data(), up.data(), sp.data(), rp.data(), G.K, wp.data(), gp.data(), G.S,
                        G.N, G.d);
  for (int j = 0; j < G.S; j++)
    if (G.has_part(j))
      attnres_merge_partial(dev, h[j].data(), lse[j].data(), G.part[j].data(), G.part_rstd[j].data(), G.w[j].data(),
                            G.g[j].data(), G.N, G.d);
}

// Gradients, accumulated onto what they hold (fill them first).
struct GroupGrads {
  std::vector<Vec> dsrc, dpart, dw, dg;
};
inline GroupGrads group_grads(const SiteGroup& G, float fill) {
  GroupGrads r;
  r.dsrc.assign(G.K, Vec(size_t(G.N) * G.d, fill));
  r.dpart.assign(G.S, Vec(size_t(G.N) * G.d, fill));
  r.dw.assign(G.S, Vec(size_t(G.d), fill));
  r.dg.assign(G.S, Vec(size_t(G.d), fill));
  return r;
}

// The backward of sites [j0, j1) as one group (the completed part of the
// group runs after its sites' partial parts). With assign, the source and
// partial gradients are written, not added to. Each site's sdot = dh · h is
// row::dot's, as rmsnorm_backward's xdot gives it in the model. With split,
// the completed part runs as two passes, over sources [split, K) and then
// [0, split), as a backward span splits it (models/chunk_depth.cpp); with
// uv_pad, the u · v rows are read from rows that long pad entries more (NaN),
// as a site with more completed sources than the pass's list has them.
inline void group_backward(const Device& dev, const SiteGroup& G, const std::vector<Vec>& h,
                           const std::vector<Vec>& lse, const std::vector<Vec>& uv, const std::vector<Vec>& dh,
                           GroupGrads& out, int j0, int j1, bool assign = false, int split = 0, int uv_pad = 0) {
  std::vector<Vec> sdot(G.S, Vec(size_t(G.N)));
  for (int j = j0; j < j1; j++)
    for (int n = 0; n < G.N; n++)
      sdot[j][n] = row::dot(dh[j].data() + size_t(n) * G.d, h[j].data() + size_t(n) * G.d, G.d);
  Vec scratch(std::max(attnres_block_backward_scratch(G.N, G.S, G.d), attnres_partial_backward_scratch(G.N, G.d)));
  for (int j = j1 - 1; j >= j0; j--)
    if (G.has_part(j))
      attnres_partial_backward(dev, out.dpart[j].data(), out.dw[j].data(), out.dg[j].data(), scratch.data(),
                               dh[j].data(), sdot[j].data(), lse[j].data(), G.part[j].data(), G.part_rstd[j].data(),
                               G.w[j].data(), G.g[j].data(), G.N, G.d, assign);
  const auto dsp = pointers<float>(out.dsrc);
  const auto sp = pointers<const float>(G.src), rp = pointers<const float>(G.rstd);
  const int row = G.K + uv_pad;
  std::vector<Vec> padded(G.S, Vec(size_t(G.N) * row, std::numeric_limits<float>::quiet_NaN()));
  std::vector<const float*> dhp, sdp, lp, up, wp, gp;
  std::vector<float*> dwp, dgp;
  std::vector<int> uv_k;
  for (int j = j0; j < j1; j++) {
    for (int n = 0; n < G.N; n++)
      std::copy_n(uv[j].data() + size_t(n) * G.K, G.K, padded[j].data() + size_t(n) * row);
    dhp.push_back(dh[j].data()), sdp.push_back(sdot[j].data()), lp.push_back(lse[j].data());
    up.push_back(padded[j].data()), uv_k.push_back(row);
    wp.push_back(G.w[j].data()), gp.push_back(G.g[j].data());
    dwp.push_back(out.dw[j].data()), dgp.push_back(out.dg[j].data());
  }
  auto pass = [&](int s0, int K) {
    attnres_block_backward(dev, dsp.data(), dwp.data(), dgp.data(), scratch.data(), dhp.data(), sdp.data(), lp.data(),
                           up.data(), sp.data(), rp.data(), K, wp.data(), gp.data(), j1 - j0, G.N, G.d, assign, s0,
                           uv_k.data());
  };
  if (split > 0) {
    pass(split, G.K);
    pass(0, split);
  } else {
    pass(0, G.K);
  }
}

// Site j's sources for the double reference: the completed ones, then its partial.
inline std::vector<DVec> site_sources(const SiteGroup& G, int j) {
  std::vector<DVec> s;
  for (const Vec& v : G.src) s.push_back(to_double(v));
  if (G.has_part(j)) s.push_back(to_double(G.part[j]));
  return s;
}

}  // namespace attnres::kernels::testing
