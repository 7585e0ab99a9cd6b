// CPU parallel helpers whose results are bitwise independent of the thread
// count (kernels/ops.h conventions).
#pragma once
#include <cblas.h>

#include <algorithm>

namespace attnres::kernels::cpu {

// Reductions over token rows: threads split the COLUMNS, and every column
// sums its rows in fixed groups of kRowGroup, adding the group partials in
// group order. The arithmetic per column is the same whatever the number of
// threads.
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

// Runs task(i) for i < ntasks on the OpenMP threads, each task free to call
// sgemm: OpenBLAS is held at one thread meanwhile, so every task's arithmetic
// is the single-threaded sgemm whatever thread runs it.
template <class Task>
void blas_tasks(int ntasks, Task task) {
  const int blas_threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
#pragma omp parallel for schedule(dynamic, 1)
  for (int i = 0; i < ntasks; i++) task(i);
  openblas_set_num_threads(blas_threads);
}

}  // namespace attnres::kernels::cpu
