// AttnRes depth attention over K sources (DESIGN §1.1).
#include "kernels/cpu/parallel_cpu.h"
#include "kernels/ops.h"
#include "kernels/rowops.h"

namespace attnres::kernels {

void attnres_forward(const Device&, float* h, float* alpha,
                     const float* const* src, const float* const* src_rstd, int K,
                     const float* w, const float* g, int N, int d) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++)
    row::attnres_forward(h + (size_t)n * d, alpha + (size_t)n * K, src, src_rstd,
                         K, w, g, n, d);
}

void attnres_backward(const Device&, float* const* dacc_src, float* dw, float* dg,
                      float* scratch, const float* dh, const float* alpha,
                      const float* const* src, const float* const* src_rstd, int K,
                      const float* w, const float* g, int N, int d) {
  // Per row: source gradients, and dz_s * rstd_s into scratch[N, K].
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++)
    row::attnres_backward(dacc_src, scratch + (size_t)n * K, dh + (size_t)n * d,
                          alpha + (size_t)n * K, src, src_rstd, K, w, g, n, d);
  // du = Σ_rows Σ_s scratch[n,s] v_s[n], reduced in fixed row groups;
  // dw = du ⊙ g, dg = du ⊙ w.
  cpu::reduce_rows(
      N, d,
      [&](int n, int i) {
        float du = 0.0f;
        for (int s = 0; s < K; s++)
          du += scratch[(size_t)n * K + s] * src[s][(size_t)n * d + i];
        return du;
      },
      [&](int i, float du) {
        dw[i] += du * g[i];
        dg[i] += du * w[i];
      });
}

}  // namespace attnres::kernels
