// CPU helper for reductions over token rows that must be bitwise independent
// of the thread count (kernels/ops.h conventions): threads split the COLUMNS,
// and every column sums its rows in fixed groups of kRowGroup, adding the
// group partials in group order. The arithmetic per column is therefore the
// same whatever the number of threads.
#pragma once
#include <algorithm>

namespace attnres::kernels::cpu {

constexpr int kRowGroup = 32;
constexpr int kColBlock = 64;

// Calls emit(i, Σ_n term(n, i)) once per column i < d, sums over n < N.
template <class Term, class Emit>
void reduce_rows(int N, int d, Term term, Emit emit) {
  const int nblocks = (d + kColBlock - 1) / kColBlock;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < nblocks; b++) {
    const int i0 = b * kColBlock;
    const int w = std::min(kColBlock, d - i0);
    float total[kColBlock] = {};
    for (int n0 = 0; n0 < N; n0 += kRowGroup) {
      const int n1 = std::min(N, n0 + kRowGroup);
      float part[kColBlock] = {};
      for (int n = n0; n < n1; n++)
        for (int i = 0; i < w; i++) part[i] += term(n, i0 + i);
      for (int i = 0; i < w; i++) total[i] += part[i];
    }
    for (int i = 0; i < w; i++) emit(i0 + i, total[i]);
  }
}

}  // namespace attnres::kernels::cpu
