// CPU threads, shared by OpenMP and OpenBLAS.
#include <cblas.h>
#include <omp.h>

#include <cassert>

#include "kernels/device.h"

namespace attnres::kernels {

void set_num_threads(int n) {
  assert(n >= 0);
  if (n == 0) n = omp_get_num_procs();
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int get_num_threads() { return omp_get_max_threads(); }

}  // namespace attnres::kernels
