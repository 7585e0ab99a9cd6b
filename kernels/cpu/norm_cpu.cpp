// The RMSNorm gain gradient: a reduction over token rows (the per-row parts
// of RMSNorm and RoPE are kernels/grid_ops.h).
#include "kernels/cpu/ops_cpu.h"
#include "kernels/cpu/parallel_cpu.h"

namespace attnres::kernels::cpu {

void rmsnorm_gain_grad(float* dg, const float* dout, const float* x, const float* rstd, int N, int d) {
  cpu::reduce_rows(
      N, d,
      [&](int n, int i) {
        size_t k = (size_t)n * d + i;
        return dout[k] * x[k] * rstd[n];
      },
      [&](int i, float total) { dg[i] += total; });
}

}  // namespace attnres::kernels::cpu
