// Softmax cross-entropy over the vocabulary, and the sum of the token losses.
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cpu/ops_cpu.h"
#include "kernels/rowops.h"

namespace attnres::kernels::cpu {

// Targets come from data files: an out-of-range id is bad input; -1 masks a row.
static void check_targets(const int32_t* targets, int N, int V) {
  for (int n = 0; n < N; n++)
    if (targets[n] < -1 || targets[n] >= V)
      throw std::runtime_error("cross_entropy: target id " +
                               std::to_string(targets[n]) + " at row " +
                               std::to_string(n) + " is outside the vocabulary [0, " +
                               std::to_string(V) + ")");
}

void cross_entropy_row_max(const Device&, float* row_max, const float* logits, int N, int Vl) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) row_max[n] = row::row_max(logits + (size_t)n * Vl, Vl);
}

void cross_entropy_row_sums(const Device&, float* sum_exp, float* target_logit, const float* logits,
                            const int32_t* targets, const float* row_max, int N, int Vl, int v0, int V) {
  check_targets(targets, N, V);
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const float* x = logits + (size_t)n * Vl;
    sum_exp[n] = row::row_sum_exp(x, Vl, row_max[n]);
    const int t = targets[n] - v0;
    target_logit[n] = targets[n] >= 0 && t >= 0 && t < Vl ? x[t] : 0.0f;
  }
}

void cross_entropy_loss(const Device&, float* losses, const float* row_max, const float* sum_exp,
                        const float* target_logit, const int32_t* targets, int N) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++)
    losses[n] = targets[n] < 0 ? 0.0f : logf(sum_exp[n]) + row_max[n] - target_logit[n];
}

void cross_entropy_backward(const Device&, float* dlogits, const float* logits, const int32_t* targets,
                            const float* row_max, const float* sum_exp, int N, int Vl, int v0,
                            float scale) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    float* dl = dlogits + (size_t)n * Vl;
    if (targets[n] < 0) {  // masked row
      for (int i = 0; i < Vl; i++) dl[i] = 0.0f;
      continue;
    }
    row::cross_entropy_backward(dl, logits + (size_t)n * Vl, Vl, targets[n] - v0, row_max[n],
                                sum_exp[n], scale);
  }
}

double sum(const Device&, const float* x, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += x[i];
  return s;
}

}  // namespace attnres::kernels::cpu
