// Causal self-attention. One (batch, head) pair per task; its K (or V) is
// transposed into a thread-local [hd, T] buffer so that score rows are built
// with contiguous, vectorizable axpys instead of short dot products.
#include <cmath>
#include <vector>

#include "kernels/ops.h"
#include "kernels/rowops.h"

namespace attnres::kernels {

namespace {

// xt[i*T + j] = x[j*C + i]: one head's [T, hd] slice, transposed.
void transpose_head(float* xt, const float* x, int T, int hd, size_t C) {
  for (int j = 0; j < T; j++)
    for (int i = 0; i < hd; i++) xt[(size_t)i * T + j] = x[j * C + i];
}

// s[j] = c * Σ_i a[i] * bt[i*T + j] for j < len.
void row_times_transposed(float* s, const float* a, const float* bt, int len, int T,
                          int hd, float c) {
  for (int j = 0; j < len; j++) s[j] = 0.0f;
  for (int i = 0; i < hd; i++) {
    const float ai = a[i] * c;
    const float* b = bt + (size_t)i * T;
    for (int j = 0; j < len; j++) s[j] += ai * b[j];
  }
}

// y[i] = Σ_j p[j * pstride] * x[j*C + i] for j in [j0, j1), i < hd.
void weighted_rows(float* y, const float* p, size_t pstride, const float* x,
                   int j0, int j1, int hd, size_t C) {
  for (int i = 0; i < hd; i++) y[i] = 0.0f;
  for (int j = j0; j < j1; j++) {
    const float pj = p[j * pstride];
    const float* xr = x + j * C;
    for (int i = 0; i < hd; i++) y[i] += pj * xr[i];
  }
}

thread_local std::vector<float> t_buf;

float* thread_buffer(size_t n) {
  if (t_buf.size() < n) t_buf.resize(n);
  return t_buf.data();
}

}  // namespace

void attention_forward(const Device&, float* out, float* att, const float* q,
                       const float* k, const float* v, int B, int T, int H, int hd) {
  const size_t C = (size_t)H * hd;
  const float scale = 1.0f / std::sqrt((float)hd);
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < B * H; bh++) {
    const int b = bh / H, h = bh % H;
    const size_t base = (size_t)b * T * C + (size_t)h * hd;
    float* kt = thread_buffer((size_t)hd * T);
    transpose_head(kt, k + base, T, hd, C);
    float* A = att + (size_t)bh * T * T;
    for (int t = 0; t < T; t++) {
      float* s = A + (size_t)t * T;
      row_times_transposed(s, q + base + t * C, kt, t + 1, T, hd, scale);
      row::softmax(s, t + 1);
      for (int j = t + 1; j < T; j++) s[j] = 0.0f;
      weighted_rows(out + base + t * C, s, 1, v + base, 0, t + 1, hd, C);
    }
  }
}

// With P = att, dP = dO V^T, dS = P ⊙ (dP - rowsum(P ⊙ dP)) * scale:
// dq = dS K, dk = dS^T Q, dv = P^T dO.
void attention_backward(const Device&, float* dq, float* dk, float* dv,
                        float* scratch, const float* dout, const float* att,
                        const float* q, const float* k, const float* v, int B,
                        int T, int H, int hd) {
  const size_t C = (size_t)H * hd;
  const float scale = 1.0f / std::sqrt((float)hd);
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < B * H; bh++) {
    const int b = bh / H, h = bh % H;
    const size_t base = (size_t)b * T * C + (size_t)h * hd;
    float* vt = thread_buffer((size_t)hd * T);
    transpose_head(vt, v + base, T, hd, C);
    const float* P = att + (size_t)bh * T * T;
    float* S = scratch + (size_t)bh * T * T;
    for (int t = 0; t < T; t++) {
      const float* p = P + (size_t)t * T;
      float* ds = S + (size_t)t * T;
      row_times_transposed(ds, dout + base + t * C, vt, t + 1, T, hd, 1.0f);
      float sd = 0.0f;
      for (int j = 0; j <= t; j++) sd += p[j] * ds[j];
      for (int j = 0; j <= t; j++) ds[j] = p[j] * (ds[j] - sd) * scale;
      weighted_rows(dq + base + t * C, ds, 1, k + base, 0, t + 1, hd, C);
    }
    // Columns j of S and P: only rows t >= j are set (causal).
    for (int j = 0; j < T; j++) {
      weighted_rows(dk + base + j * C, S + j, T, q + base, j, T, hd, C);
      weighted_rows(dv + base + j * C, P + j, T, dout + base, j, T, hd, C);
    }
  }
}

}  // namespace attnres::kernels
