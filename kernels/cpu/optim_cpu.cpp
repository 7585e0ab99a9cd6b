// AdamW, and the pieces of global gradient-norm clipping.
#include <algorithm>
#include <cassert>
#include <cmath>

#include "kernels/cpu/ops_cpu.h"

namespace attnres::kernels::cpu {

void adamw_update(const Device&, float* param, const float* grad, float* m,
                  float* v, size_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int t) {
  assert(t >= 1);
  const float bc1 = 1.0f - (float)std::pow((double)beta1, t);
  const float bc2 = 1.0f - (float)std::pow((double)beta2, t);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) {
    const float g = grad[i];
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float mhat = mi / bc1;
    const float vhat = vi / bc2;
    param[i] -= lr * (mhat / (std::sqrt(vhat) + eps) + weight_decay * param[i]);
  }
}

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

void scale_inplace(const Device&, float* x, float s, size_t n) {
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) x[i] *= s;
}

}  // namespace attnres::kernels::cpu
