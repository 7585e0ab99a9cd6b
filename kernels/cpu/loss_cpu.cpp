// Softmax cross-entropy over the vocabulary, and the sum of the token losses.
#include <stdexcept>
#include <string>

#include "kernels/cpu/ops_cpu.h"
#include "kernels/rowops.h"

namespace attnres::kernels::cpu {

// Targets come from data files: an out-of-range id is bad input. A negative
// target masks its row (padding of a short evaluation batch): the forward
// gives it loss 0; the backward, which only training runs, rejects it.
static void check_targets(const int32_t* targets, int N, int V, bool masked_ok) {
  for (int n = 0; n < N; n++)
    if ((targets[n] < 0 && !masked_ok) || targets[n] >= V)
      throw std::runtime_error("cross_entropy: target id " +
                               std::to_string(targets[n]) + " at row " +
                               std::to_string(n) + " is outside the vocabulary [0, " +
                               std::to_string(V) + ")");
}

void cross_entropy_forward(const Device&, float* losses, const float* logits,
                           const int32_t* targets, int N, int V) {
  check_targets(targets, N, V, true);
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++)
    losses[n] = targets[n] < 0 ? 0.0f : row::cross_entropy_forward(logits + (size_t)n * V, V, targets[n]);
}

void cross_entropy_backward(const Device&, float* dlogits, const float* logits,
                            const int32_t* targets, int N, int V, float scale) {
  check_targets(targets, N, V, false);
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++)
    row::cross_entropy_backward(dlogits + (size_t)n * V, logits + (size_t)n * V, V,
                                targets[n], scale);
}

double sum(const Device&, const float* x, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += x[i];
  return s;
}

}  // namespace attnres::kernels::cpu
