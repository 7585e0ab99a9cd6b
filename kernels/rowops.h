// Row-level math shared by every backend: one token row (or one attention
// row) at a time. Functions are inline and ATTNRES_HD so a CUDA kernel can
// call exactly the arithmetic that the CPU tests check.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kernels/dtype.h"
#include "kernels/hd.h"
#include "kernels/limits.h"

namespace attnres::kernels::row {

// ---- dot products ----------------------------------------------------------------
// Σ_i a[i] b[i] (c[i]) in 8 interleaved partial sums added in a fixed order:
// the compiler can vectorise it (a single running sum is a serial chain under
// strict IEEE order), and the result is the same on every backend and thread count.
// Each step of a lane is an explicit fused multiply-add: left to contract
// a*b + c on its own, GCC fuses or not depending on how it vectorises a
// loop, so two sums of the same products could differ in the last bit (the
// sum of one source's dh · v in two kernels, say). The lane loops are
// marked for GCC, which does not vectorise several lane arrays by itself;
// lanes are independent, so the arithmetic is the plain loop's.
#if defined(_OPENMP) && !defined(__CUDA_ARCH__)
#define ATTNRES_LANES _Pragma("omp simd")
#else
#define ATTNRES_LANES
#endif
constexpr int kDotLanes = 8;
ATTNRES_HD inline float lanes_sum(const float* acc) {
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}
ATTNRES_HD inline float dot(const float* a, const float* b, int d) {
  float acc[kDotLanes] = {};
  int i = 0;
  for (; i + kDotLanes <= d; i += kDotLanes) {
    ATTNRES_LANES
    for (int l = 0; l < kDotLanes; l++) acc[l] = fmaf(a[i + l], b[i + l], acc[l]);
  }
  for (; i < d; i++) acc[i % kDotLanes] = fmaf(a[i], b[i], acc[i % kDotLanes]);
  return lanes_sum(acc);
}
ATTNRES_HD inline float dot3(const float* a, const float* b, const float* c, int d) {
  float acc[kDotLanes] = {};
  int i = 0;
  for (; i + kDotLanes <= d; i += kDotLanes) {
    ATTNRES_LANES
    for (int l = 0; l < kDotLanes; l++) acc[l] = fmaf(a[i + l] * b[i + l], c[i + l], acc[l]);
  }
  for (; i < d; i++) acc[i % kDotLanes] = fmaf(a[i] * b[i], c[i], acc[i % kDotLanes]);
  return lanes_sum(acc);
}

// ---- RMSNorm -----------------------------------------------------------------
ATTNRES_HD inline float rms_inverse(const float* x, int d, float eps) {
  return 1.0f / sqrtf(dot(x, x, d) / (float)d + eps);
}

// out = g * x * rstd; returns rstd.
ATTNRES_HD inline float rmsnorm_forward(float* out, const float* x, const float* g,
                                        int d, float eps) {
  float r = rms_inverse(x, d, eps);
  for (int i = 0; i < d; i++) out[i] = g[i] * x[i] * r;
  return r;
}

// dx = r * (g*dout - x * r^2 * (Σ dout*g*x) / d), since dr/dx = -r^3 x / d.
// The gain gradient dg += dout * x * r is a reduction over rows, done by the
// caller in fixed row groups.
ATTNRES_HD inline void rmsnorm_backward(float* dx, const float* dout,
                                        const float* x, const float* g, float r,
                                        int d) {
  float c = r * r * dot3(dout, g, x, d) / (float)d;
  for (int i = 0; i < d; i++) dx[i] = r * (g[i] * dout[i] - x[i] * c);
}

// ---- softmax (max-subtracted), in place over n entries -------------------------
// With lse, also log Σ exp(x) of the entries on entry.
ATTNRES_HD inline void softmax(float* x, int n, float* lse = nullptr) {
  float mx = x[0];
  for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
  float sum = 0.0f;
  for (int i = 0; i < n; i++) {
    x[i] = expf(x[i] - mx);
    sum += x[i];
  }
  float inv = 1.0f / sum;
  for (int i = 0; i < n; i++) x[i] *= inv;
  if (lse) *lse = mx + logf(sum);
}

// ---- causal attention, one row of scores ------------------------------------------
// Row t of a [T, T] score matrix sees keys 0..t (len = t + 1): softmax over
// them, exact zeros beyond (so P·V ignores them).
ATTNRES_HD inline void causal_softmax(float* s, int len, int width) {
  softmax(s, len);
  for (int j = len; j < width; j++) s[j] = 0.0f;
}

// Backward of one row: ds = dP on entry, P ⊙ (dP − Σ P ⊙ dP) · scale on exit;
// zeros beyond len.
ATTNRES_HD inline void causal_softmax_backward(float* ds, const float* p, int len, int width, float scale) {
  float sd = 0.0f;
  for (int j = 0; j < len; j++) sd += p[j] * ds[j];
  for (int j = 0; j < len; j++) ds[j] = p[j] * (ds[j] - sd) * scale;
  for (int j = len; j < width; j++) ds[j] = 0.0f;
}

// ---- AttnRes depth attention, one token row n (DESIGN §1.1) ------------------
// Sources are src[s] + n*d with key-side rstd src_rstd[s][n]; u = w ⊙ g is
// the pseudo-query times the key-norm gain, the same float wherever it is
// formed: element by element in the forward, once per row group backward.
//   z_s = rstd_s * (u · v_s);  alpha = softmax(z);  h = Σ_s alpha_s v_s.
// The paper's two phases (Algorithm 1): a site's completed sources first,
// then its partial block sum merged in by online softmax. src, src_rstd and
// dacc_src are indexable lists of pointers (grid::PtrList, or arrays).
// The dot products of T sources v[t] with vectors w_p of P sites (with
// kGain, with w_p ⊙ g_p formed element by element: the forward's queries u)
// and, with kDh, with the sites' dh[p], in one pass: P T (or 2 P T)
// independent sums side by side instead of one latency-bound chain each,
// each source loaded once for all. uv[p * T + t] = w_p · v_t, and dhv likewise.
// Each sum equals the one computed alone bit for bit (dh · v equals
// dot(dh, v) however it is asked for): the same lanes, in the same order.
template <int P, int T, bool kGain, bool kDh>
ATTNRES_HD inline void source_dots(float* uv, float* dhv, const float* const* w, const float* const* g,
                                   const float* const* dh, const float* const* v, int d) {
  float au[P][T][kDotLanes] = {}, ah[P][T][kDotLanes] = {};
  int i = 0;
  for (; i + kDotLanes <= d; i += kDotLanes)
    for (int p = 0; p < P; p++)
      for (int t = 0; t < T; t++) {
        ATTNRES_LANES
        for (int l = 0; l < kDotLanes; l++) {
          const float u = kGain ? w[p][i + l] * g[p][i + l] : w[p][i + l];
          au[p][t][l] = fmaf(u, v[t][i + l], au[p][t][l]);
          if (kDh) ah[p][t][l] = fmaf(dh[p][i + l], v[t][i + l], ah[p][t][l]);
        }
      }
  for (; i < d; i++)
    for (int p = 0; p < P; p++)
      for (int t = 0; t < T; t++) {
        const float u = kGain ? w[p][i] * g[p][i] : w[p][i];
        au[p][t][i % kDotLanes] = fmaf(u, v[t][i], au[p][t][i % kDotLanes]);
        if (kDh) ah[p][t][i % kDotLanes] = fmaf(dh[p][i], v[t][i], ah[p][t][i % kDotLanes]);
      }
  for (int p = 0; p < P; p++)
    for (int t = 0; t < T; t++) {
      uv[p * T + t] = lanes_sum(au[p][t]);
      if (kDh) dhv[p * T + t] = lanes_sum(ah[p][t]);
    }
}
ATTNRES_HD inline float query_dot(const float* w, const float* g, const float* v, int d) {
  float uv;
  source_dots<1, 1, true, false>(&uv, nullptr, &w, &g, nullptr, &v, d);
  return uv;
}
// source_dots of P sites and the T sources [s, s + T) of a list (a tile:
// source_tile), at row offset off. The site lists w, g, dh (dh already at
// the row) hold P entries: with g, the forward's w ⊙ g · v; else w · v, and
// with dh also dh · v.
constexpr int kSourceTile = 4;  // sources per tile with a pair of sites
constexpr int kMaxTile = 8;     // with one site: still 8 independent sums
template <int P, int T, class Src>
ATTNRES_HD inline void source_tile_dots(float* uv, float* dhv, const float* const* w, const float* const* g,
                                        const float* const* dh, const Src& src, int s, size_t off, int d) {
  const float* v[T];
  for (int t = 0; t < T; t++) v[t] = src[s + t] + off;
  if (g)
    source_dots<P, T, true, false>(uv, dhv, w, g, dh, v, d);
  else if (dh)
    source_dots<P, T, false, true>(uv, dhv, w, g, dh, v, d);
  else
    source_dots<P, T, false, false>(uv, dhv, w, g, dh, v, d);
}
template <int P, class Src>
ATTNRES_HD inline void source_tile_dots(float* uv, float* dhv, const float* const* w, const float* const* g,
                                        const float* const* dh, const Src& src, int s, int T, size_t off, int d) {
  if (T == 4) source_tile_dots<P, 4>(uv, dhv, w, g, dh, src, s, off, d);
  if (T == 3) source_tile_dots<P, 3>(uv, dhv, w, g, dh, src, s, off, d);
  if (T == 2) source_tile_dots<P, 2>(uv, dhv, w, g, dh, src, s, off, d);
  if (T == 1) source_tile_dots<P, 1>(uv, dhv, w, g, dh, src, s, off, d);
  if (T > kSourceTile && P == 1) {
    if (T == 8) source_tile_dots<1, 8>(uv, dhv, w, g, dh, src, s, off, d);
    if (T == 7) source_tile_dots<1, 7>(uv, dhv, w, g, dh, src, s, off, d);
    if (T == 6) source_tile_dots<1, 6>(uv, dhv, w, g, dh, src, s, off, d);
    if (T == 5) source_tile_dots<1, 5>(uv, dhv, w, g, dh, src, s, off, d);
  }
}
// The tile of sources from s on for P sites: up to 4 with a pair, 8 alone.
// Tiles change no bit: each source's sums are its own.
ATTNRES_HD inline int source_tile(int s, int K, int P) {
  const int cap = P == 1 ? kMaxTile : kSourceTile;
  return K - s < cap ? K - s : cap;
}

// h[p] += Σ_t a[p * T + t] v[t] for P sites over T sources, added in the
// order t = 0, 1, ... of T passes of h[p][i] += a v[t][i], but with each h
// loaded and stored once and each source loaded once for all sites. The
// first tile (kFirst) starts from 0 instead of loading h.
template <int P, int T, bool kFirst>
ATTNRES_HD inline void add_weighted(float* const* h, const float* a, const float* const* v, int d) {
  ATTNRES_LANES
  for (int i = 0; i < d; i++) {
    float vi[T];  // once for all sites: a store to h might alias v, as far as the compiler knows
    for (int t = 0; t < T; t++) vi[t] = v[t][i];
    for (int p = 0; p < P; p++) {
      float x = kFirst ? 0.0f : h[p][i];
      for (int t = 0; t < T; t++) x = fmaf(a[p * T + t], vi[t], x);
      h[p][i] = x;
    }
  }
}
template <int P, bool kFirst, class Src>
ATTNRES_HD inline void add_weighted_tile(float* const* h, const float* a, const Src& src, int s, int T, size_t off,
                                         int d) {
  const float* v[kMaxTile];
  for (int t = 0; t < T; t++) v[t] = src[s + t] + off;
  if (T == 4) add_weighted<P, 4, kFirst>(h, a, v, d);
  if (T == 3) add_weighted<P, 3, kFirst>(h, a, v, d);
  if (T == 2) add_weighted<P, 2, kFirst>(h, a, v, d);
  if (T == 1) add_weighted<P, 1, kFirst>(h, a, v, d);
  if (T > kSourceTile && P == 1) {
    if (T == 8) add_weighted<1, 8, kFirst>(h, a, v, d);
    if (T == 7) add_weighted<1, 7, kFirst>(h, a, v, d);
    if (T == 6) add_weighted<1, 6, kFirst>(h, a, v, d);
    if (T == 5) add_weighted<1, 5, kFirst>(h, a, v, d);
  }
}

// Phase 1 for P sites over their K completed sources, each source row loaded
// once for all P: h[p] = Σ alpha_ps v_s, lse[p] = log Σ_s exp(z_ps), and
// unless uv is null, uv[p][s] = u_p · v_s for the backward; h, lse and uv
// point at the row. z holds P * K floats of scratch.
template <int P, class Src>
ATTNRES_HD inline void attnres_completed(float* const* h, float* lse, float* const* uv, float* z, const Src& src,
                                         const Src& src_rstd, int K, const float* const* w, const float* const* g,
                                         size_t n, int d) {
  const size_t off = n * (size_t)d;
  float tile[P * kMaxTile];
  for (int s = 0, T; s < K; s += T) {
    T = source_tile(s, K, P);
    source_tile_dots<P>(tile, nullptr, w, g, nullptr, src, s, T, off, d);
    for (int p = 0; p < P; p++)
      for (int t = 0; t < T; t++) {
        if (uv) uv[p][s + t] = tile[p * T + t];
        z[p * K + s + t] = tile[p * T + t] * src_rstd[s + t][n];
      }
  }
  for (int p = 0; p < P; p++) softmax(z + p * K, K, lse + p);
  for (int s = 0, T; s < K; s += T) {
    T = source_tile(s, K, P);
    for (int p = 0; p < P; p++)
      for (int t = 0; t < T; t++) tile[p * T + t] = z[p * K + s + t];
    if (s == 0)
      add_weighted_tile<P, true>(h, tile, src, s, T, off, d);
    else
      add_weighted_tile<P, false>(h, tile, src, s, T, off, d);
  }
}

// Phase 2: the partial block sum p (rstd r) joins the completed sources'
// (h, lse) in place: with z_p = r (u · p), the softmax over all sources.
ATTNRES_HD inline void attnres_merge(float* h, float* lse, const float* p, float r, const float* w, const float* g,
                                     int d) {
  const float zp = r * query_dot(w, g, p, d);
  const float mx = *lse > zp ? *lse : zp;
  const float ec = expf(*lse - mx), ep = expf(zp - mx), sum = ec + ep;
  const float ac = ec / sum, ap = ep / sum;
  for (int i = 0; i < d; i++) h[i] = ac * h[i] + ap * p[i];
  *lse = mx + logf(sum);
}

// The gradient of one source v (rstd r) of a site, given the site's dh, lse
// and sdot = Σ_t alpha_t (dh · v_t) = dh · h. With uv = u · v,
// alpha = exp(r uv - lse) and dz = alpha (dh · v - sdot):
//   dv += alpha dh + dz r (u - uv r^2 v / d)   (value path, then key path
//         through both u·v and rstd(v)),   du += dz r v.
// These are the per-source scalars: a = alpha, dzk = dz r, c = uv r^2 / d,
// from uv and dhv = dh · v.
struct SourceGrad {
  float a, dzk, c;
};
ATTNRES_HD inline SourceGrad attnres_source_grad(float uv, float dhv, float sdot, float lse, float r, int d) {
  const float a = expf(r * uv - lse);
  return {a, a * (dhv - sdot) * r, uv * r * r / (float)d};
}
// One element of a site's term in a source's gradient: a dh + dzk (u - c v),
// its roundings spelled out so every kernel makes the same.
ATTNRES_HD inline float source_term(const SourceGrad& q, float dh, float v, float u) {
  return fmaf(q.a, dh, q.dzk * fmaf(-q.c, v, u));
}
// The backward's queries u_j = w_j ⊙ g_j of S sites, into u[j * d ...]:
// the same floats the forward forms element by element.
template <class ConstSites>
ATTNRES_HD inline void attnres_queries(float* u, const ConstSites& w, const ConstSites& g, int S, int d) {
  for (int j = 0; j < S; j++)
    for (int i = 0; i < d; i++) u[(size_t)j * d + i] = w[j][i] * g[j][i];
}
// One source row's update by P sites in turn: dv += a dh + dzk (u - c v)
// and du[p] += dzk v for each. dv is loaded and stored once, and gets the
// terms in list order, the same bits as P passes of one site each. With
// kAssign, dv is the first gradient its buffer gets: the terms are written
// from 0, and what the buffer held is not read. With kRound (a bf16 run,
// whose stream gradients hold bf16 values), dv is rounded to bf16 after each
// site's term: a chunk boundary between two sites leaves the same value.
template <int P, bool kAssign, bool kRound>
ATTNRES_HD inline void attnres_source_update(float* dv, float* const* du, const SourceGrad* q, const float* const* dh,
                                             const float* v, const float* const* u, int d) {
  ATTNRES_LANES
  for (int i = 0; i < d; i++) {
    const float vi = v[i];  // once: the stores to du might alias v, as far as the compiler knows
    float x = kAssign ? 0.0f : dv[i];
    for (int p = 0; p < P; p++) {
      x += source_term(q[p], dh[p][i], vi, u[p][i]);
      if (kRound) x = round_bf16(x);
      du[p][i] = fmaf(q[p].dzk, vi, du[p][i]);
    }
    dv[i] = x;
  }
}

// The backward of a site's partial source p, given the site's sdot = dh · h:
// adds p's gradient to dp (writes it, with assign) and its query gradient
// to du; u is the site's query (attnres_queries).
ATTNRES_HD inline void attnres_partial_backward(float* dp, float* du, const float* dh, float sdot, float lse,
                                                const float* p, float r, const float* u, int d, bool assign,
                                                bool round) {
  float uv, dhv;
  source_dots<1, 1, false, true>(&uv, &dhv, &u, nullptr, &dh, &p, d);
  const SourceGrad q = attnres_source_grad(uv, dhv, sdot, lse, r, d);
  if (assign && round)
    attnres_source_update<1, true, true>(dp, &du, &q, &dh, p, &u, d);
  else if (assign)
    attnres_source_update<1, true, false>(dp, &du, &q, &dh, p, &u, d);
  else if (round)
    attnres_source_update<1, false, true>(dp, &du, &q, &dh, p, &u, d);
  else
    attnres_source_update<1, false, false>(dp, &du, &q, &dh, p, &u, d);
}

// attnres_source_update of one source row (tile slot t) by the P sites
// j, j - 1, ... of attnres_tile_backward, in that order.
template <int P, bool kAssign, bool kRound, class ConstSites>
ATTNRES_HD inline void attnres_sites_update(float* dv, float* du, const SourceGrad (*sg)[kMaxTile], int t,
                                            const ConstSites& dh, const float* u, int j, const float* v, size_t off,
                                            int d) {
  const float *dhp[P], *up[P];
  float* dup[P];
  SourceGrad q[P];
  for (int p = 0; p < P; p++)
    dhp[p] = dh[j - p] + off, up[p] = u + (size_t)(j - p) * d, dup[p] = du + (size_t)(j - p) * d, q[p] = sg[j - p][t];
  attnres_source_update<P, kAssign, kRound>(dv, dup, q, dhp, v, up, d);
}

// Every source row of the tile gets the S sites' terms (attnres_tile_backward).
template <bool kRound, class Dst, class Src, class ConstSites>
ATTNRES_HD inline void attnres_tile_update(const Dst& dacc_src, float* du, const ConstSites& dh,
                                           const SourceGrad (*sg)[kMaxTile], const Src& src, int s0, int T,
                                           const float* u, int S, size_t off, int d, bool assign) {
  for (int t = 0; t < T; t++) {
    float* dv = dacc_src[s0 + t] + off;
    const float* v = src[s0 + t] + off;
    int j = S - 1;
    if (assign && j >= 1)  // the first (last) pair's terms start from 0
      attnres_sites_update<2, true, kRound>(dv, du, sg, t, dh, u, j, v, off, d), j -= 2;
    else if (assign)
      attnres_sites_update<1, true, kRound>(dv, du, sg, t, dh, u, 0, v, off, d), j -= 1;
    for (; j >= 1; j -= 2) attnres_sites_update<2, false, kRound>(dv, du, sg, t, dh, u, j, v, off, d);
    if (j == 0) attnres_sites_update<1, false, kRound>(dv, du, sg, t, dh, u, 0, v, off, d);
  }
}

// The backward of S sites' completed sources of the tile [s0, s0 + T) in
// row n, in one pass over each source row: its gradient gets the sites'
// terms added in reverse site order (the order site-by-site backwards would
// add them), du[j*d ...] site j's query terms. dh lists the sites',
// u[j*d ...] is site j's query (attnres_queries); sdot[j], lse[j] are site
// j's values of row n, uv[j] its row of the forward's u · v. The tile's
// dh · v products run side by side (source_dots). With assign, the sources'
// gradients are written (the first these buffers get), not added to. With
// round, they are rounded to bf16 after each site's term (a bf16 run).
template <class Dst, class Src, class ConstSites>
ATTNRES_HD inline void attnres_tile_backward(const Dst& dacc_src, float* du, const ConstSites& dh, const float* sdot,
                                             const float* lse, const float* const* uv, const Src& src,
                                             const Src& src_rstd, int s0, int T, const float* u, int S, size_t n,
                                             int d, bool assign, bool round) {
  const size_t off = n * (size_t)d;
  SourceGrad sg[kMaxSites][kMaxTile];
  for (int j = 0; j < S; j += 2) {  // the dot products of a pair of sites at once
    const int P = j + 1 < S ? 2 : 1;
    float dhv[kMaxTile];
    const float* dhp[2] = {dh[j] + off, dh[j + P - 1] + off};
    if (P == 2)
      source_tile_dots<2>(dhv, nullptr, dhp, nullptr, nullptr, src, s0, T, off, d);
    else
      source_tile_dots<1>(dhv, nullptr, dhp, nullptr, nullptr, src, s0, T, off, d);
    for (int p = 0; p < P; p++)
      for (int t = 0; t < T; t++)
        sg[j + p][t] = attnres_source_grad(uv[j + p][s0 + t], dhv[p * T + t], sdot[j + p], lse[j + p],
                                           src_rstd[s0 + t][n], d);
  }
  if (round)
    attnres_tile_update<true>(dacc_src, du, dh, sg, src, s0, T, u, S, off, d, assign);
  else
    attnres_tile_update<false>(dacc_src, du, dh, sg, src, s0, T, u, S, off, d, assign);
}

// ---- SwiGLU element: out = silu(gate) * up ------------------------------------
ATTNRES_HD inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

ATTNRES_HD inline float swiglu_forward(float gate, float up) {
  return gate * sigmoid(gate) * up;
}

// silu'(x) = sig(x) * (1 + x * (1 - sig(x))).
ATTNRES_HD inline void swiglu_backward(float* dgate, float* dup, float dout,
                                       float gate, float up) {
  float sg = sigmoid(gate);
  *dgate = dout * up * sg * (1.0f + gate * (1.0f - sg));
  *dup = dout * gate * sg;
}

// ---- RoPE pair rotation (rotate-half: element i pairs with i + hd/2) -----------
ATTNRES_HD inline void rope_rotate(float* a, float* b, float c, float s) {
  float x = *a, y = *b;
  *a = x * c - y * s;
  *b = x * s + y * c;
}

// Transpose (inverse) rotation, for backward.
ATTNRES_HD inline void rope_rotate_back(float* a, float* b, float c, float s) {
  float x = *a, y = *b;
  *a = x * c + y * s;
  *b = -x * s + y * c;
}

// Cross-entropy of one row over a vocabulary shard (kernels/ops.h): the row
// maximum, then Σ exp(x - max). With one shard these are the softmax's own.
ATTNRES_HD inline float row_max(const float* x, int n) {
  float mx = x[0];
  for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
  return mx;
}

ATTNRES_HD inline float row_sum_exp(const float* x, int n, float mx) {
  float sum = 0.0f;
  for (int i = 0; i < n; i++) sum += expf(x[i] - mx);
  return sum;
}

// dlogits = (softmax(logits) - onehot(target)) * scale over the shard's
// columns; `target` is shard-local (outside [0, n): another shard's).
ATTNRES_HD inline void cross_entropy_backward(float* dlogits, const float* logits, int n,
                                              int target, float mx, float sum, float scale) {
  for (int i = 0; i < n; i++) dlogits[i] = expf(logits[i] - mx);
  const float inv = scale / sum;
  for (int i = 0; i < n; i++) dlogits[i] *= inv;
  if (target >= 0 && target < n) dlogits[target] -= scale;
}

}  // namespace attnres::kernels::row
