// Single-source kernels (DESIGN §7): each op here is written once, as a
// per-index body and the size of its grid, over a runner that calls the body
// for every index: kernels/cpu/grid_cpu.h runs the grid with OpenMP threads,
// kernels/cuda/grid_cuda.cuh launches it as a __global__ kernel. So the CPU
// tests (finite differences, pipelines against one rank, resume) run the
// indexing and arithmetic a GPU runs. A body only touches its own index's
// outputs: no atomics, and the same bits whatever the thread count.
//
// Contracts are those of kernels/ops.h, which dispatches here.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/dtype.h"
#include "kernels/limits.h"
#include "kernels/rowops.h"

namespace attnres::kernels::grid {

// Reductions over token rows use fixed groups of kRowGroup rows, whose
// partials are added in group order (DESIGN §5).
constexpr int kRowGroup = 32;
constexpr int kColBlock = 64;

// emit(i, Σ_n term(n, i)) for every column i < d, summing rows n < N: one
// body per block of kColBlock columns, each column adding its rows in groups.
template <class Run, class Term, class Emit>
void reduce_rows(const Run& run, int N, int d, Term term, Emit emit) {
  run((d + kColBlock - 1) / kColBlock, [=] ATTNRES_HD(int64_t b) {
    const int i0 = int(b) * kColBlock;
    const int w = d - i0 < kColBlock ? d - i0 : kColBlock;
    float total[kColBlock] = {};
    for (int n0 = 0; n0 < N; n0 += kRowGroup) {
      const int n1 = n0 + kRowGroup < N ? n0 + kRowGroup : N;
      float part[kColBlock] = {};
      for (int n = n0; n < n1; n++)
        for (int i = 0; i < w; i++) part[i] += term(n, i0 + i);
      for (int i = 0; i < w; i++) total[i] += part[i];
    }
    for (int i = 0; i < w; i++) emit(i0 + i, total[i]);
  });
}

// ---- elementwise ---------------------------------------------------------------------
// With `round`, sums are rounded to bf16 values (a bf16 run's residual
// stream and its gradients, DESIGN §11).
ATTNRES_HD inline float maybe_round(float v, bool round) { return round ? round_bf16(v) : v; }
template <class Run>
void add_inplace(const Run& run, float* y, const float* x, size_t n, bool round) {
  run(int64_t(n), [=] ATTNRES_HD(int64_t i) { y[i] = maybe_round(y[i] + x[i], round); });
}
template <class Run>
void add(const Run& run, float* out, const float* a, const float* b, size_t n, bool round) {
  run(int64_t(n), [=] ATTNRES_HD(int64_t i) { out[i] = maybe_round(a[i] + b[i], round); });
}
template <class Run>
void round_bf16_inplace(const Run& run, float* x, size_t n) {
  run(int64_t(n), [=] ATTNRES_HD(int64_t i) { x[i] = round_bf16(x[i]); });
}
// Precision casts (kernels/dtype.h): to bf16 rounds to nearest even.
template <class Run>
void convert(const Run& run, bf16* out, const float* in, size_t n) {
  run(int64_t(n), [=] ATTNRES_HD(int64_t i) { out[i] = to_bf16(in[i]); });
}
template <class Run>
void convert(const Run& run, float* out, const bf16* in, size_t n) {
  run(int64_t(n), [=] ATTNRES_HD(int64_t i) { out[i] = to_float(in[i]); });
}
template <class Run>
void scale_inplace(const Run& run, float* x, float s, size_t n) {
  run(int64_t(n), [=] ATTNRES_HD(int64_t i) { x[i] *= s; });
}
template <class Run>
void swiglu_forward(const Run& run, float* out, const float* gate, const float* up, size_t n) {
  run(int64_t(n), [=] ATTNRES_HD(int64_t i) { out[i] = row::swiglu_forward(gate[i], up[i]); });
}
template <class Run>
void swiglu_backward(const Run& run, float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                     size_t n) {
  run(int64_t(n), [=] ATTNRES_HD(int64_t i) { row::swiglu_backward(&dgate[i], &dup[i], dout[i], gate[i], up[i]); });
}

// AdamW on one element; the bias corrections bc1, bc2 are computed once by the caller.
template <class Run>
void adamw_update(const Run& run, float* param, const float* grad, float* m, float* v, size_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, float bc1, float bc2) {
  run(int64_t(n), [=] ATTNRES_HD(int64_t i) {
    const float g = grad[i];
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float mhat = mi / bc1;
    const float vhat = vi / bc2;
    param[i] -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * param[i]);
  });
}

// ---- one token row per index -----------------------------------------------------------
template <class Run>
void rmsnorm_forward(const Run& run, float* out, float* rstd, const float* x, const float* g, int N, int d,
                     float eps) {
  run(N, [=] ATTNRES_HD(int64_t n) {
    const size_t off = size_t(n) * size_t(d);
    rstd[n] = row::rmsnorm_forward(out + off, x + off, g, d, eps);
  });
}
// dx only; the gain gradient is a reduction over rows (the caller's).
// Unless xdot is null, xdot[n] = dx · x of the row, while both are in cache.
template <class Run>
void rmsnorm_backward_dx(const Run& run, float* dx, float* xdot, const float* dout, const float* x, const float* g,
                         const float* rstd, int N, int d) {
  run(N, [=] ATTNRES_HD(int64_t n) {
    const size_t off = size_t(n) * size_t(d);
    row::rmsnorm_backward(dx + off, dout + off, x + off, g, rstd[n], d);
    if (xdot) xdot[n] = row::dot(dx + off, x + off, d);
  });
}
// dg[i] += Σ_n dout[n,i] x[n,i] rstd[n]: RMSNorm's gain gradient.
template <class Run>
void rmsnorm_gain_grad(const Run& run, float* dg, const float* dout, const float* x, const float* rstd, int N, int d) {
  reduce_rows(
      run, N, d,
      [=] ATTNRES_HD(int n, int i) {
        const size_t k = size_t(n) * size_t(d) + i;
        return dout[k] * x[k] * rstd[n];
      },
      [=] ATTNRES_HD(int i, float total) { dg[i] += total; });
}
template <class Run>
void rms_inverse(const Run& run, float* rstd, const float* x, int N, int d, float eps) {
  run(N, [=] ATTNRES_HD(int64_t n) { rstd[n] = row::rms_inverse(x + size_t(n) * size_t(d), d, eps); });
}
template <class Run>
void add_rms_inverse(const Run& run, float* out, float* rstd, const float* a, const float* b, int N, int d,
                     float eps, bool round) {
  run(N, [=] ATTNRES_HD(int64_t n) {
    const size_t off = size_t(n) * size_t(d);
    for (int i = 0; i < d; i++) out[off + i] = maybe_round(a[off + i] + b[off + i], round);
    rstd[n] = row::rms_inverse(out + off, d, eps);
  });
}

// RoPE on row bt = b·T + t of x [B·T, H, hd]: every head's pairs rotated by
// position t's angles (inverse = the transpose rotation, for the backward).
template <bool kInverse, class Run>
void rope_apply(const Run& run, float* x, const float* cos_t, const float* sin_t, int B, int T, int H, int hd) {
  run(int64_t(B) * T, [=] ATTNRES_HD(int64_t bt) {
    const int half = hd / 2;
    const float* c = cos_t + size_t(bt % T) * half;
    const float* s = sin_t + size_t(bt % T) * half;
    for (int h = 0; h < H; h++) {
      float* xh = x + (size_t(bt) * H + h) * hd;
      for (int i = 0; i < half; i++) {
        if (kInverse)
          row::rope_rotate_back(&xh[i], &xh[i + half], c[i], s[i]);
        else
          row::rope_rotate(&xh[i], &xh[i + half], c[i], s[i]);
      }
    }
  });
}

// The table holds vocabulary rows [v0, v0 + Vl); other ids give zero rows.
template <class Run, class T>
void embedding_forward(const Run& run, float* out, const int32_t* tokens, const T* table, int N, int d, int v0,
                       int Vl) {
  run(N, [=] ATTNRES_HD(int64_t n) {
    const int r = tokens[n] - v0;
    float* dst = out + size_t(n) * size_t(d);
    const bool mine = r >= 0 && r < Vl;  // else another tp rank's vocabulary rows
    const T* src = table + size_t(mine ? r : 0) * size_t(d);
    for (int i = 0; i < d; i++) dst[i] = mine ? to_float(src[i]) : 0.0f;
  });
}

// ---- attention score rows (around the GEMMs of a GEMM-based attention) -------------------
// rows score rows of `width` each; row r is row r % T of its [T, T] matrix
// (causal: it sees r % T + 1 keys), or with T = 0 every row sees all `width`.
template <class Run>
void causal_softmax_rows(const Run& run, float* s, int64_t rows, int width, int T) {
  run(rows, [=] ATTNRES_HD(int64_t r) { row::causal_softmax(s + size_t(r) * width, T ? int(r % T) + 1 : width, width); });
}
template <class Run>
void causal_softmax_backward_rows(const Run& run, float* ds, const float* p, int64_t rows, int T, float scale) {
  run(rows, [=] ATTNRES_HD(int64_t r) {
    row::causal_softmax_backward(ds + size_t(r) * T, p + size_t(r) * T, int(r % T) + 1, T, scale);
  });
}

// Causal attention as strided-batched GEMMs over the heads of each sequence
// around those rows: the CUDA backend's attention (kernels/cuda/attention.cu).
// q, k, v are [B·T, H·hd] with heads interleaved in a row, so head h of
// sequence b starts at b·T·H·hd + h·hd with leading dimension H·hd. The
// masked upper triangle of a score matrix is computed, then zeroed by the
// row body. `gemm` is gemm_strided_batched of kernels/ops.h without its
// device; the CPU tests run this with the CPU's GEMM against the CPU's tiled
// attention (tests/kernels/test_attention_batched.cpp).
template <class Run, class Gemm>
void attention_forward_batched(const Run& run, const Gemm& gemm, float* out, float* att, const float* q,
                               const float* k, const float* v, int B, int T, int H, int hd) {
  const int C = H * hd;
  const float scale = 1.0f / sqrtf(float(hd));
  const int64_t seq = int64_t(T) * C, tt = int64_t(T) * T;
  for (int b = 0; b < B; b++)  // S_h = scale · Q_h K_hᵀ for every head h
    gemm(false, true, T, T, hd, scale, q + b * seq, C, hd, k + b * seq, C, hd, 0.0f, att + b * H * tt, T, tt, H);
  causal_softmax_rows(run, att, int64_t(B) * H * T, T, T);
  for (int b = 0; b < B; b++)  // O_h = P_h V_h
    gemm(false, false, T, hd, T, 1.0f, att + b * H * tt, T, tt, v + b * seq, C, hd, 0.0f, out + b * seq, C, hd, H);
}
template <class Run, class Gemm>
void attention_backward_batched(const Run& run, const Gemm& gemm, float* dq, float* dk, float* dv, float* scratch,
                                const float* dout, const float* att, const float* q, const float* k, const float* v,
                                int B, int T, int H, int hd) {
  const int C = H * hd;
  const float scale = 1.0f / sqrtf(float(hd));
  const int64_t seq = int64_t(T) * C, tt = int64_t(T) * T;
  for (int b = 0; b < B; b++)  // dP_h = dO_h V_hᵀ
    gemm(false, true, T, T, hd, 1.0f, dout + b * seq, C, hd, v + b * seq, C, hd, 0.0f, scratch + b * H * tt, T, tt,
         H);
  causal_softmax_backward_rows(run, scratch, att, int64_t(B) * H * T, T, scale);
  for (int b = 0; b < B; b++) {
    const float *dS = scratch + b * H * tt, *P = att + b * H * tt;
    gemm(false, false, T, hd, T, 1.0f, dS, T, tt, k + b * seq, C, hd, 0.0f, dq + b * seq, C, hd, H);    // dQ = dS K
    gemm(true, false, T, hd, T, 1.0f, dS, T, tt, q + b * seq, C, hd, 0.0f, dk + b * seq, C, hd, H);     // dK = dSᵀ Q
    gemm(true, false, T, hd, T, 1.0f, P, T, tt, dout + b * seq, C, hd, 0.0f, dv + b * seq, C, hd, H);   // dV = Pᵀ dO
  }
}
// Decoding: scores_h [1, T] = scale · q_h K_hᵀ, softmax over all T, out_h = scores_h V_h.
template <class Run, class Gemm>
void attention_decode_batched(const Run& run, const Gemm& gemm, float* out, float* scores, const float* q,
                              const float* kcache, const float* vcache, int T, int H, int hd) {
  const int C = H * hd;
  const float scale = 1.0f / sqrtf(float(hd));
  gemm(false, true, 1, T, hd, scale, q, C, hd, kcache, C, hd, 0.0f, scores, T, T, H);
  causal_softmax_rows(run, scores, H, T, 0);
  gemm(false, false, 1, hd, T, 1.0f, scores, T, T, vcache, C, hd, 0.0f, out, C, hd, H);
}

// ---- flash attention: causal attention in O(T) memory per head ------------------------
// No [T, T] probabilities (FlashAttention's algorithm, one query row per
// body): row (b, h, i) walks its keys 0..i in tiles of kKeyTile with an
// online softmax (a running max and sum; the output so far is rescaled when
// the max grows) and keeps its log-sum-exp for the backward, which
// recomputes each probability from it. Tiles past the diagonal are never
// visited. The backward is two grids: one body per query row for delta_i =
// Σ_j p_ij dp_ij and dq, then one per key row for dk and dv, each adding
// its terms in index order (no atomics). Rows are indexed (b, h, i), i
// fastest: lse and delta are [B, H, T].
constexpr int kKeyTile = 32;

struct FlashRow {
  size_t head;  // the (b, h) head's offset in q, k, v: b·T·C + h·hd
  int i;        // the row's position
};
ATTNRES_HD inline FlashRow flash_row(int64_t r, int T, int H, int hd) {
  const int64_t bh = r / T;
  return {size_t(bh / H) * size_t(T) * size_t(H) * hd + size_t(bh % H) * hd, int(r % T)};
}

template <class Run>
void flash_attention_forward(const Run& run, float* out, float* lse, const float* q, const float* k, const float* v,
                             int B, int T, int H, int hd) {
  const int C = H * hd;
  const float scale = 1.0f / sqrtf(float(hd));
  run(int64_t(B) * H * T, [=] ATTNRES_HD(int64_t r) {
    const FlashRow w = flash_row(r, T, H, hd);
    const float* qi = q + w.head + size_t(w.i) * C;
    float acc[kMaxHeadDim], s[kKeyTile];
    for (int e = 0; e < hd; e++) acc[e] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int j0 = 0; j0 <= w.i; j0 += kKeyTile) {
      const int n = w.i + 1 - j0 < kKeyTile ? w.i + 1 - j0 : kKeyTile;
      float mt = m;
      for (int t = 0; t < n; t++) {
        s[t] = scale * row::dot(qi, k + w.head + size_t(j0 + t) * C, hd);
        mt = fmaxf(mt, s[t]);
      }
      const float alpha = expf(m - mt);  // 0 on the first tile
      l *= alpha;
      for (int e = 0; e < hd; e++) acc[e] *= alpha;
      for (int t = 0; t < n; t++) {
        const float p = expf(s[t] - mt);
        const float* vj = v + w.head + size_t(j0 + t) * C;
        l += p;
        for (int e = 0; e < hd; e++) acc[e] += p * vj[e];
      }
      m = mt;
    }
    float* o = out + w.head + size_t(w.i) * C;
    for (int e = 0; e < hd; e++) o[e] = acc[e] / l;
    lse[r] = m + logf(l);
  });
}

// dq, dk, dv overwritten; delta: [B, H, T] scratch.
template <class Run>
void flash_attention_backward(const Run& run, float* dq, float* dk, float* dv, float* delta, const float* dout,
                              const float* lse, const float* q, const float* k, const float* v, int B, int T, int H,
                              int hd) {
  const int C = H * hd;
  const float scale = 1.0f / sqrtf(float(hd));
  const int64_t rows = int64_t(B) * H * T;
  // Query rows: p_ij = exp(s_ij − lse_i), dp_ij = dO_i · v_j,
  // delta_i = Σ_j p_ij dp_ij, dq_i = scale Σ_j p_ij (dp_ij − delta_i) k_j.
  run(rows, [=] ATTNRES_HD(int64_t r) {
    const FlashRow w = flash_row(r, T, H, hd);
    const float *qi = q + w.head + size_t(w.i) * C, *doi = dout + w.head + size_t(w.i) * C;
    float D = 0.0f;
    for (int j = 0; j <= w.i; j++) {
      const float p = expf(scale * row::dot(qi, k + w.head + size_t(j) * C, hd) - lse[r]);
      D += p * row::dot(doi, v + w.head + size_t(j) * C, hd);
    }
    delta[r] = D;
    float acc[kMaxHeadDim];
    for (int e = 0; e < hd; e++) acc[e] = 0.0f;
    for (int j = 0; j <= w.i; j++) {
      const float* kj = k + w.head + size_t(j) * C;
      const float p = expf(scale * row::dot(qi, kj, hd) - lse[r]);
      const float ds = p * (row::dot(doi, v + w.head + size_t(j) * C, hd) - D);
      for (int e = 0; e < hd; e++) acc[e] += ds * kj[e];
    }
    float* dqi = dq + w.head + size_t(w.i) * C;
    for (int e = 0; e < hd; e++) dqi[e] = scale * acc[e];
  });
  // Key rows j: dv_j = Σ_{i≥j} p_ij dO_i, dk_j = scale Σ_{i≥j} p_ij (dp_ij − delta_i) q_i.
  run(rows, [=] ATTNRES_HD(int64_t r) {
    const FlashRow w = flash_row(r, T, H, hd);
    const float *kj = k + w.head + size_t(w.i) * C, *vj = v + w.head + size_t(w.i) * C;
    float ak[kMaxHeadDim], av[kMaxHeadDim];
    for (int e = 0; e < hd; e++) ak[e] = av[e] = 0.0f;
    for (int i = w.i; i < T; i++) {
      const int64_t ri = r - w.i + i;  // row i of the same head
      const float *qi = q + w.head + size_t(i) * C, *doi = dout + w.head + size_t(i) * C;
      const float p = expf(scale * row::dot(qi, kj, hd) - lse[ri]);
      const float ds = p * (row::dot(doi, vj, hd) - delta[ri]);
      for (int e = 0; e < hd; e++) av[e] += p * doi[e], ak[e] += ds * qi[e];
    }
    float *dkj = dk + w.head + size_t(w.i) * C, *dvj = dv + w.head + size_t(w.i) * C;
    for (int e = 0; e < hd; e++) dkj[e] = scale * ak[e], dvj[e] = av[e];
  });
}

// The gradient of the embedding rows [v0, v0 + Vl): one body per block of
// columns, each adding the tokens in row order, so repeated tokens
// accumulate identically everywhere.
template <class Run>
void embedding_backward(const Run& run, float* dtable, const float* dout, const int32_t* tokens, int N, int d, int v0,
                        int Vl) {
  run((d + kColBlock - 1) / kColBlock, [=] ATTNRES_HD(int64_t b) {
    const int i0 = int(b) * kColBlock, i1 = i0 + kColBlock < d ? i0 + kColBlock : d;
    for (int n = 0; n < N; n++) {
      const int r = tokens[n] - v0;
      if (r < 0 || r >= Vl) continue;  // another tp rank's vocabulary rows
      float* dst = dtable + size_t(r) * d;
      const float* src = dout + size_t(n) * d;
      for (int i = i0; i < i1; i++) dst[i] += src[i];
    }
  });
}

// ---- the AttnRes sites (DESIGN §1.1), in the paper's two phases --------------------------
// Pointer lists of a call (host arrays, kernels/ops.h), copied into the body
// by value: on CUDA they travel in the launch's arguments.
template <class P, int Cap>
struct PtrList {
  P p[Cap];
  ATTNRES_HD P operator[](int s) const { return p[s]; }
};
template <class P, int Cap>
PtrList<P, Cap> ptr_list(const P* ptrs, int n, const char* what) {
  if (n < 1 || n > Cap)
    throw std::invalid_argument(std::string("attnres: ") + std::to_string(n) + " " + what + "; 1 to " +
                                std::to_string(Cap) + " are supported");
  PtrList<P, Cap> l;
  for (int s = 0; s < n; s++) l.p[s] = ptrs[s];
  return l;
}
template <class P>
PtrList<P, kMaxSources> source_list(const P* ptrs, int K) {
  return ptr_list<P, kMaxSources>(ptrs, K, "sources");
}
template <class P>
PtrList<P, kMaxSites> site_list(const P* ptrs, int S) {
  return ptr_list<P, kMaxSites>(ptrs, S, "sites");
}

// Phase 1's per-row scratch, z, holds two sites' scores of K sources. It
// lives in the thread's stack (local memory on a GPU, where the device
// reserves the largest frame of any kernel for every thread it can hold at
// once: at 1025 sources, 2 GiB on an H100). So it is sized by a capacity
// of K, not by kMaxSources.
inline int source_capacity(int K) { return K <= 16 ? 16 : K <= 64 ? 64 : K <= 256 ? 256 : kMaxSources; }
// The largest per-thread stack of the depth kernels: the forward's (z and
// the rest of its frame) or the backward's, whose frame does not depend on
// K. nvcc 13 for sm_80 and sm_90 makes the rest at most 360 bytes and the
// backward's 1280 (nvcc -Xptxas -v; docs/CUDA.md).
constexpr size_t kForwardFrameRest = 512, kBackwardFrame = 1280;
inline size_t attnres_stack_bytes(int K) {
  const size_t forward = 2 * size_t(source_capacity(K)) * sizeof(float) + kForwardFrameRest;
  return forward > kBackwardFrame ? forward : kBackwardFrame;
}

// Phase 1: each row reads its completed sources once per pair of sites
// (wider groups ran no faster: their sums no longer fit in registers).
// Unless uv is null, uv[j] gets site j's [N, K] products u · v for the
// backward. Cap = source_capacity(K).
template <int Cap, class Run>
void attnres_block_forward_cap(const Run& run, float* const* h, float* const* lse, float* const* uv,
                               const float* const* src, const float* const* src_rstd, int K, const float* const* w,
                               const float* const* g, int S, int N, int d) {
  const auto v = source_list(src, K), r = source_list(src_rstd, K);
  const auto hs = site_list(h, S), ls = site_list(lse, S);
  const auto ws = site_list(w, S), gs = site_list(g, S);
  const bool save = uv != nullptr;
  const auto us = save ? site_list(uv, S) : PtrList<float*, kMaxSites>{};
  run(N, [=] ATTNRES_HD(int64_t n) {
    float z[2 * Cap];
    for (int j = 0; j < S; j += 2) {
      const int P = j + 1 < S ? 2 : 1, k = j + P - 1;  // the pair's sites j and k
      float* hn[2] = {hs[j] + size_t(n) * d, hs[k] + size_t(n) * d};
      float* un[2] = {save ? us[j] + size_t(n) * K : nullptr, save ? us[k] + size_t(n) * K : nullptr};
      const float* wj[2] = {ws[j], ws[k]};
      const float* gj[2] = {gs[j], gs[k]};
      float l[2];
      if (P == 2)
        row::attnres_completed<2>(hn, l, save ? un : nullptr, z, v, r, K, wj, gj, size_t(n), d);
      else
        row::attnres_completed<1>(hn, l, save ? un : nullptr, z, v, r, K, wj, gj, size_t(n), d);
      ls[j][n] = l[0], ls[k][n] = l[P - 1];
    }
  });
}
template <class Run>
void attnres_block_forward(const Run& run, float* const* h, float* const* lse, float* const* uv,
                           const float* const* src, const float* const* src_rstd, int K, const float* const* w,
                           const float* const* g, int S, int N, int d) {
  switch (source_capacity(K)) {
    case 16: return attnres_block_forward_cap<16>(run, h, lse, uv, src, src_rstd, K, w, g, S, N, d);
    case 64: return attnres_block_forward_cap<64>(run, h, lse, uv, src, src_rstd, K, w, g, S, N, d);
    case 256: return attnres_block_forward_cap<256>(run, h, lse, uv, src, src_rstd, K, w, g, S, N, d);
    default: return attnres_block_forward_cap<kMaxSources>(run, h, lse, uv, src, src_rstd, K, w, g, S, N, d);
  }
}

// Unless xn is null, also xn = RMSNorm(h) (gain norm) of the merged row.
template <class Run>
void attnres_merge_partial(const Run& run, float* h, float* lse, const float* p, const float* p_rstd, const float* w,
                           const float* g, int N, int d, float* xn, float* rstd, const float* norm, float eps) {
  run(N, [=] ATTNRES_HD(int64_t n) {
    const size_t off = size_t(n) * d;
    row::attnres_merge(h + off, lse + n, p + off, p_rstd[n], w, g, d);
    if (xn) rstd[n] = row::rmsnorm_forward(xn + off, h + off, norm, d, eps);
  });
}

// Query gradients: rows in fixed groups of kRowGroup (one body per group)
// accumulate the group's du partials in row order; a body per column then
// adds the partials in group order. Rows write only their own source rows.
// So the result depends neither on the thread count nor on the backend.
inline int row_groups(int N) { return (N + kRowGroup - 1) / kRowGroup; }
// Per row group: the du partials of S sites, then their queries u.
inline size_t attnres_block_backward_scratch(int N, int S, int d) {
  return 2 * size_t(row_groups(N)) * size_t(S) * size_t(d);
}
inline size_t attnres_partial_backward_scratch(int N, int d) { return attnres_block_backward_scratch(N, 1, d); }

// dw_j += du_j ⊙ g_j and dg_j += du_j ⊙ w_j for S sites, du_j the sum over
// row groups of part[(group * S + j) * d + i].
template <class Run>
void attnres_query_grads(const Run& run, const float* part, int groups, int S, int d, PtrList<float*, kMaxSites> dw,
                         PtrList<float*, kMaxSites> dg, PtrList<const float*, kMaxSites> w,
                         PtrList<const float*, kMaxSites> g) {
  run(int64_t(S) * d, [=] ATTNRES_HD(int64_t x) {
    const int j = int(x / d), i = int(x % d);
    float du = 0.0f;
    for (int gi = 0; gi < groups; gi++) du += part[(size_t(gi) * S + j) * d + i];
    dw[j][i] += du * g[j][i];
    dg[j][i] += du * w[j][i];
  });
}

template <class Run>
void attnres_partial_backward(const Run& run, float* dacc_p, float* dw, float* dg, float* scratch, const float* dh,
                              const float* sdot, const float* lse, const float* p, const float* p_rstd, const float* w,
                              const float* g, int N, int d, bool assign, bool round) {
  const int groups = row_groups(N);
  run(groups, [=] ATTNRES_HD(int64_t gi) {
    float* du = scratch + size_t(gi) * d;
    float* u = scratch + size_t(groups + gi) * d;
    for (int i = 0; i < d; i++) du[i] = 0.0f;
    row::attnres_queries(u, &w, &g, 1, d);
    const int n0 = int(gi) * kRowGroup, n1 = n0 + kRowGroup < N ? n0 + kRowGroup : N;
    for (int n = n0; n < n1; n++) {
      const size_t off = size_t(n) * d;
      row::attnres_partial_backward(dacc_p + off, du, dh + off, sdot[n], lse[n], p + off, p_rstd[n], u, d, assign,
                                    round);
    }
  });
  attnres_query_grads(run, scratch, groups, 1, d, site_list(&dw, 1), site_list(&dg, 1), site_list(&w, 1),
                      site_list(&g, 1));
}

template <class Run>
void attnres_block_backward(const Run& run, float* const* dacc_src, float* const* dw, float* const* dg,
                            float* scratch, const float* const* dh, const float* const* sdot,
                            const float* const* lse, const float* const* uv, const float* const* src,
                            const float* const* src_rstd, int K, const float* const* w, const float* const* g, int S,
                            int N, int d, bool assign, int s0, const int* uv_k, bool round) {
  if (s0 < 0 || s0 >= K) throw std::invalid_argument("attnres: first source " + std::to_string(s0) + " of " +
                                                     std::to_string(K));
  for (int j = 0; uv_k && j < S; j++)
    if (uv_k[j] < K)
      throw std::invalid_argument("attnres: site " + std::to_string(j) + "'s u . v rows hold " +
                                  std::to_string(uv_k[j]) + " products, the pass reads " + std::to_string(K));
  const int groups = row_groups(N);
  const auto dv = source_list(dacc_src, K);
  const auto v = source_list(src, K), r = source_list(src_rstd, K);
  const auto dhs = site_list(dh, S), sd = site_list(sdot, S), ls = site_list(lse, S), us = site_list(uv, S);
  const auto ws = site_list(w, S), gs = site_list(g, S);
  PtrList<int, kMaxSites> ks;  // each site's uv row length
  for (int j = 0; j < S; j++) ks.p[j] = uv_k ? uv_k[j] : K;
  run(groups, [=] ATTNRES_HD(int64_t gi) {
    float* du = scratch + size_t(gi) * S * d;
    float* u = scratch + size_t(groups + gi) * S * d;
    for (int i = 0; i < S * d; i++) du[i] = 0.0f;
    row::attnres_queries(u, ws, gs, S, d);
    const int n0 = int(gi) * kRowGroup, n1 = n0 + kRowGroup < N ? n0 + kRowGroup : N;
    for (int n = n0; n < n1; n++) {
      float sdot_n[kMaxSites], lse_n[kMaxSites];
      const float* uv_n[kMaxSites];
      for (int j = 0; j < S; j++) sdot_n[j] = sd[j][n], lse_n[j] = ls[j][n], uv_n[j] = us[j] + size_t(n) * ks[j];
      for (int s = s0, T; s < K; s += T) {
        T = row::source_tile(s, K, S > 1 ? 2 : 1);  // the sites' dot products go in pairs
        row::attnres_tile_backward(dv, du, dhs, sdot_n, lse_n, uv_n, v, r, s, T, u, S, size_t(n), d, assign, round);
      }
    }
  });
  attnres_query_grads(run, scratch, groups, S, d, site_list(dw, S), site_list(dg, S), ws, gs);
}

// ---- sums returned to the host ----------------------------------------------------------
// Σ x[i] in float64, in index order: one body (the token losses of a
// microbatch are summed so on every backend).
template <class Run>
void sum_serial(const Run& run, double* acc, const float* x, size_t n) {
  run(1, [=] ATTNRES_HD(int64_t) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += x[i];
    *acc += s;
  });
}
// Σ x[i]² in float64 in fixed groups of kSumGroup elements, one body per
// group, each group in index order; the caller adds the partials in group order.
constexpr size_t kSumGroup = 4096;
inline size_t sum_groups(size_t n) { return (n + kSumGroup - 1) / kSumGroup; }
template <class Run>
void sum_squares_partials(const Run& run, double* partial, const float* x, size_t n) {
  run(int64_t(sum_groups(n)), [=] ATTNRES_HD(int64_t gi) {
    const size_t i0 = size_t(gi) * kSumGroup, i1 = i0 + kSumGroup < n ? i0 + kSumGroup : n;
    double s = 0.0;
    for (size_t i = i0; i < i1; i++) s += double(x[i]) * double(x[i]);
    partial[gi] = s;
  });
}
ATTNRES_HD inline double add_in_order(const double* partial, size_t count) {
  double total = 0.0;
  for (size_t i = 0; i < count; i++) total += partial[i];
  return total;
}
// The partials, then one body that adds them in group order.
template <class Run>
void sum_squares(const Run& run, double* out, double* partial, const float* x, size_t n) {
  sum_squares_partials(run, partial, x, n);
  const size_t groups = sum_groups(n);
  run(1, [=] ATTNRES_HD(int64_t) { *out = add_in_order(partial, groups); });
}

// ---- cross-entropy rows over a vocabulary shard -----------------------------------------
template <class Run>
void cross_entropy_row_max(const Run& run, float* row_max, const float* logits, int N, int Vl) {
  run(N, [=] ATTNRES_HD(int64_t n) { row_max[n] = row::row_max(logits + size_t(n) * Vl, Vl); });
}
template <class Run>
void cross_entropy_row_sums(const Run& run, float* sum_exp, float* target_logit, const float* logits,
                            const int32_t* targets, const float* row_max, int N, int Vl, int v0) {
  run(N, [=] ATTNRES_HD(int64_t n) {
    const float* x = logits + size_t(n) * Vl;
    sum_exp[n] = row::row_sum_exp(x, Vl, row_max[n]);
    const int t = targets[n] - v0;
    target_logit[n] = targets[n] >= 0 && t >= 0 && t < Vl ? x[t] : 0.0f;
  });
}
template <class Run>
void cross_entropy_loss(const Run& run, float* losses, const float* row_max, const float* sum_exp,
                        const float* target_logit, const int32_t* targets, int N) {
  run(N, [=] ATTNRES_HD(int64_t n) {
    losses[n] = targets[n] < 0 ? 0.0f : logf(sum_exp[n]) + row_max[n] - target_logit[n];
  });
}
template <class Run>
void cross_entropy_backward(const Run& run, float* dlogits, const float* logits, const int32_t* targets,
                            const float* row_max, const float* sum_exp, int N, int Vl, int v0, float scale) {
  run(N, [=] ATTNRES_HD(int64_t n) {
    float* dl = dlogits + size_t(n) * Vl;
    if (targets[n] < 0) {  // masked row
      for (int i = 0; i < Vl; i++) dl[i] = 0.0f;
      return;
    }
    row::cross_entropy_backward(dl, logits + size_t(n) * Vl, Vl, targets[n] - v0, row_max[n], sum_exp[n], scale);
  });
}

}  // namespace attnres::kernels::grid
