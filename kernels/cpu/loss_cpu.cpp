// The cross-entropy's check of its targets (host memory), and the sum of the
// token losses. The cross-entropy rows themselves are kernels/grid_ops.h.
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cpu/ops_cpu.h"

namespace attnres::kernels::cpu {

// Targets come from data files: an out-of-range id is bad input; -1 masks a row.
void check_targets(const int32_t* targets, int N, int V) {
  for (int n = 0; n < N; n++)
    if (targets[n] < -1 || targets[n] >= V)
      throw std::runtime_error("cross_entropy: target id " +
                               std::to_string(targets[n]) + " at row " +
                               std::to_string(n) + " is outside the vocabulary [0, " +
                               std::to_string(V) + ")");
}

double sum(const Device&, const float* x, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += x[i];
  return s;
}

}  // namespace attnres::kernels::cpu
