// Row-level math shared by every backend: one token row (or one attention
// row) at a time. Functions are inline and ATTNRES_HD so a CUDA kernel can
// call exactly the arithmetic that the CPU tests check.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kernels/limits.h"

#ifdef __CUDACC__
#define ATTNRES_HD __host__ __device__
#else
#define ATTNRES_HD
#endif

namespace attnres::kernels::row {

// ---- dot products ----------------------------------------------------------------
// Σ_i a[i] b[i] (c[i]) in 8 interleaved partial sums added in a fixed order:
// the compiler can vectorise it (a single running sum is a serial chain under
// strict IEEE order), and the result is the same on every backend and thread count.
constexpr int kDotLanes = 8;
ATTNRES_HD inline float lanes_sum(const float* acc) {
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}
ATTNRES_HD inline float dot(const float* a, const float* b, int d) {
  float acc[kDotLanes] = {};
  int i = 0;
  for (; i + kDotLanes <= d; i += kDotLanes)
    for (int l = 0; l < kDotLanes; l++) acc[l] += a[i + l] * b[i + l];
  for (; i < d; i++) acc[i % kDotLanes] += a[i] * b[i];
  return lanes_sum(acc);
}
ATTNRES_HD inline float dot3(const float* a, const float* b, const float* c, int d) {
  float acc[kDotLanes] = {};
  int i = 0;
  for (; i + kDotLanes <= d; i += kDotLanes)
    for (int l = 0; l < kDotLanes; l++) acc[l] += a[i + l] * b[i + l] * c[i + l];
  for (; i < d; i++) acc[i % kDotLanes] += a[i] * b[i] * c[i];
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
ATTNRES_HD inline void softmax(float* x, int n) {
  float mx = x[0];
  for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
  float sum = 0.0f;
  for (int i = 0; i < n; i++) {
    x[i] = expf(x[i] - mx);
    sum += x[i];
  }
  float inv = 1.0f / sum;
  for (int i = 0; i < n; i++) x[i] *= inv;
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
// the pseudo-query times the key-norm gain, formed element by element (the
// same float wherever it is formed, so no buffer is needed for it).
//   z_s = rstd_s * (u · v_s);  alpha = softmax(z);  h = Σ_s alpha_s v_s.
// The paper's two phases (Algorithm 1): a site's completed sources first,
// then its partial block sum merged in by online softmax. src, src_rstd and
// dacc_src are indexable lists of pointers (grid::PtrList, or arrays).
ATTNRES_HD inline float query_dot(const float* w, const float* g, const float* v, int d) {
  float acc[kDotLanes] = {};
  int i = 0;
  for (; i + kDotLanes <= d; i += kDotLanes)
    for (int l = 0; l < kDotLanes; l++) {
      const float u = w[i + l] * g[i + l];
      acc[l] += u * v[i + l];
    }
  for (; i < d; i++) {
    const float u = w[i] * g[i];
    acc[i % kDotLanes] += u * v[i];
  }
  return lanes_sum(acc);
}

// Phase 1 for one site over its K completed sources: h = Σ alpha_s v_s and
// the return value lse = log Σ_s exp(z_s). z holds K floats of scratch.
template <class Src>
ATTNRES_HD inline float attnres_completed(float* h, float* z, const Src& src, const Src& src_rstd, int K,
                                          const float* w, const float* g, size_t n, int d) {
  const size_t off = n * (size_t)d;
  for (int s = 0; s < K; s++) z[s] = src_rstd[s][n] * query_dot(w, g, src[s] + off, d);
  float mx = z[0];
  for (int s = 1; s < K; s++) mx = z[s] > mx ? z[s] : mx;
  float sum = 0.0f;
  for (int s = 0; s < K; s++) {
    z[s] = expf(z[s] - mx);
    sum += z[s];
  }
  const float inv = 1.0f / sum;
  for (int i = 0; i < d; i++) h[i] = 0.0f;
  for (int s = 0; s < K; s++) {
    const float* v = src[s] + off;
    const float a = z[s] * inv;
    for (int i = 0; i < d; i++) h[i] += a * v[i];
  }
  return mx + logf(sum);
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
// These are the per-source scalars: a = alpha, dzk = dz r, c = uv r^2 / d.
struct SourceGrad {
  float a, dzk, c;
};
ATTNRES_HD inline SourceGrad attnres_source_grad(const float* dh, float sdot, float lse, const float* v, float r,
                                                 const float* w, const float* g, int d) {
  const float uv = query_dot(w, g, v, d);
  const float a = expf(r * uv - lse);
  return {a, a * (dot(dh, v, d) - sdot) * r, uv * r * r / (float)d};
}

// The backward of a site's partial source p: returns sdot = dh · h, and when
// p is not null adds p's gradient to dp and its query gradient to du.
ATTNRES_HD inline float attnres_partial_backward(float* dp, float* du, const float* dh, const float* h, float lse,
                                                 const float* p, float r, const float* w, const float* g, int d) {
  const float sdot = dot(dh, h, d);
  if (!p) return sdot;
  const SourceGrad sg = attnres_source_grad(dh, sdot, lse, p, r, w, g, d);
  for (int i = 0; i < d; i++) {
    const float u = w[i] * g[i];
    dp[i] += sg.a * dh[i] + sg.dzk * (u - sg.c * p[i]);
    du[i] += sg.dzk * p[i];
  }
  return sdot;
}

// The backward of S sites' completed sources in one pass over each source:
// its gradient gets the sites' terms added in reverse site order (the order
// site-by-site backwards would add them), du[j*d ...] site j's query terms.
// dh, w, g list the sites'; sdot[j], lse[j] are site j's values of row n.
template <class Dst, class Src, class ConstSites>
ATTNRES_HD inline void attnres_completed_backward(const Dst& dacc_src, float* du, const ConstSites& dh,
                                                  const float* sdot, const float* lse, const Src& src,
                                                  const Src& src_rstd, int K, const ConstSites& w,
                                                  const ConstSites& g, int S, size_t n, int d) {
  const size_t off = n * (size_t)d;
  SourceGrad sg[kMaxSites];
  for (int s = 0; s < K; s++) {
    const float* v = src[s] + off;
    float* dv = dacc_src[s] + off;
    const float r = src_rstd[s][n];
    for (int j = 0; j < S; j++) sg[j] = attnres_source_grad(dh[j] + off, sdot[j], lse[j], v, r, w[j], g[j], d);
    // One simple loop per site (it vectorises); dv stays in L1 between them.
    for (int j = S - 1; j >= 0; j--) {
      const float *dhj = dh[j] + off, *wj = w[j], *gj = g[j];
      float* duj = du + (size_t)j * d;
      const SourceGrad t = sg[j];
      for (int i = 0; i < d; i++) {
        dv[i] += t.a * dhj[i] + t.dzk * (wj[i] * gj[i] - t.c * v[i]);
        duj[i] += t.dzk * v[i];
      }
    }
  }
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
