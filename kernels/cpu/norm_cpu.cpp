// RMSNorm and RoPE.
#include <cmath>

#include "kernels/cpu/ops_cpu.h"
#include "kernels/cpu/parallel_cpu.h"
#include "kernels/rowops.h"

namespace attnres::kernels::cpu {

void rmsnorm_forward(const Device&, float* out, float* rstd, const float* x,
                     const float* g, int N, int d, float eps) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    size_t off = (size_t)n * d;
    rstd[n] = row::rmsnorm_forward(out + off, x + off, g, d, eps);
  }
}

void rmsnorm_backward(const Device&, float* dx, float* dg, const float* dout,
                      const float* x, const float* g, const float* rstd, int N,
                      int d) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    size_t off = (size_t)n * d;
    row::rmsnorm_backward(dx + off, dout + off, x + off, g, rstd[n], d);
  }
  cpu::reduce_rows(
      N, d,
      [&](int n, int i) {
        size_t k = (size_t)n * d + i;
        return dout[k] * x[k] * rstd[n];
      },
      [&](int i, float total) { dg[i] += total; });
}

void rms_inverse(const Device&, float* rstd, const float* x, int N, int d,
                 float eps) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) rstd[n] = row::rms_inverse(x + (size_t)n * d, d, eps);
}

// Rotates every head's pairs by the position's angle; the inverse rotation is
// the backward (a rotation's transpose is its inverse).
template <bool kInverse>
static void rope_apply(float* x, const float* cos_t, const float* sin_t, int B, int T, int H, int hd) {
  const int half = hd / 2;
#pragma omp parallel for schedule(static)
  for (int bt = 0; bt < B * T; bt++) {
    const int t = bt % T;
    const float* c = cos_t + (size_t)t * half;
    const float* s = sin_t + (size_t)t * half;
    for (int h = 0; h < H; h++) {
      float* xh = x + ((size_t)bt * H + h) * hd;
      for (int i = 0; i < half; i++) {
        if (kInverse)
          row::rope_rotate_back(&xh[i], &xh[i + half], c[i], s[i]);
        else
          row::rope_rotate(&xh[i], &xh[i + half], c[i], s[i]);
      }
    }
  }
}

void rope_forward(const Device&, float* x, const float* cos_t, const float* sin_t,
                  int B, int T, int H, int hd) {
  rope_apply<false>(x, cos_t, sin_t, B, T, H, hd);
}

void rope_backward(const Device&, float* dx, const float* cos_t, const float* sin_t,
                   int B, int T, int H, int hd) {
  rope_apply<true>(dx, cos_t, sin_t, B, T, H, hd);
}

}  // namespace attnres::kernels::cpu
