// AttnRes depth attention over K sources (DESIGN §1.1).
#include <cstring>
#include <vector>

#include "kernels/cpu/grid_cpu.h"
#include "kernels/cpu/ops_cpu.h"
#include "kernels/cpu/parallel_cpu.h"
#include "kernels/grid_ops.h"
#include "kernels/rowops.h"

namespace attnres::kernels::cpu {

// u = w ⊙ g into the caller's scratch.
static void query_times_gain(float* u, const float* w, const float* g, int d) {
  for (int i = 0; i < d; i++) u[i] = w[i] * g[i];
}

void attnres_forward(const Device&, float* h, float* alpha, float* uv,
                     const float* const* src, const float* const* src_rstd, int K,
                     const float* w, const float* g, int N, int d) {
  static thread_local std::vector<float> u_buf;  // grows once, then reused
  u_buf.resize((size_t)d);
  float* u = u_buf.data();
  query_times_gain(u, w, g, d);
  grid::attnres_forward(Grid{}, h, alpha, uv, src, src_rstd, K, u, N, d);
}

static int row_groups(int N) { return (N + cpu::kRowGroup - 1) / cpu::kRowGroup; }

size_t attnres_backward_scratch(int N, int K, int d) {
  return (size_t)row_groups(N) * (size_t)(d + K) + (size_t)d;
}

void attnres_backward(const Device&, float* const* dacc_src, float* dw, float* dg,
                      float* scratch, const float* dh, const float* alpha, const float* uv,
                      const float* const* src, const float* const* src_rstd, int K,
                      const float* w, const float* g, int N, int d) {
  // Rows in fixed groups: each group accumulates its du partial [d] in row
  // order; the partials are then summed in group order. The arithmetic does
  // not depend on the thread count.
  const int ngroups = row_groups(N);
  float* du_part = scratch;
  float* da = scratch + (size_t)ngroups * d;
  float* u = da + (size_t)ngroups * K;
  query_times_gain(u, w, g, d);
#pragma omp parallel for schedule(static)
  for (int gi = 0; gi < ngroups; gi++) {
    float* du = du_part + (size_t)gi * d;
    std::memset(du, 0, sizeof(float) * (size_t)d);
    const int n1 = std::min(N, (gi + 1) * cpu::kRowGroup);
    for (int n = gi * cpu::kRowGroup; n < n1; n++)
      row::attnres_backward(dacc_src, du, da + (size_t)gi * K, dh + (size_t)n * d,
                            alpha + (size_t)n * K, uv + (size_t)n * K, src, src_rstd, K, u, n, d);
  }
#pragma omp parallel for schedule(static)
  for (int i = 0; i < d; i++) {
    float du = 0.0f;
    for (int gi = 0; gi < ngroups; gi++) du += du_part[(size_t)gi * d + i];
    dw[i] += du * g[i];
    dg[i] += du * w[i];
  }
}

}  // namespace attnres::kernels::cpu
