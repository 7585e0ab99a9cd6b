// The sum of squares of global gradient-norm clipping (AdamW and scaling are
// kernels/grid_ops.h).
#include <algorithm>

#include "kernels/cpu/ops_cpu.h"

namespace attnres::kernels::cpu {

// Fixed groups of kSumGroup elements, each summed serially in double; the
// group partials are added in group order (kBatch groups at a time so the
// partials fit on the stack).
double sum_squares(const Device&, const float* x, size_t n) {
  constexpr size_t kSumGroup = 4096;
  constexpr int kBatch = 64;
  const size_t ngroups = (n + kSumGroup - 1) / kSumGroup;
  double total = 0.0;
  for (size_t g0 = 0; g0 < ngroups; g0 += kBatch) {
    const int nb = (int)std::min<size_t>(kBatch, ngroups - g0);
    double part[kBatch];
#pragma omp parallel for schedule(static)
    for (int b = 0; b < nb; b++) {
      const size_t i0 = (g0 + b) * kSumGroup;
      const size_t i1 = std::min(n, i0 + kSumGroup);
      double s = 0.0;
      for (size_t i = i0; i < i1; i++) s += (double)x[i] * (double)x[i];
      part[b] = s;
    }
    for (int b = 0; b < nb; b++) total += part[b];
  }
  return total;
}

}  // namespace attnres::kernels::cpu
