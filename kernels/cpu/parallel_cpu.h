// sgemm calls from OpenMP tasks, with results bitwise independent of the
// thread count (kernels/ops.h conventions). Other kernels run on
// kernels/cpu/grid_cpu.h.
#pragma once
#include <cblas.h>

#include <algorithm>

namespace attnres::kernels::cpu {

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
