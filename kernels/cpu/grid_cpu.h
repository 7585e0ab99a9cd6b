// The CPU runner of kernels/grid_ops.h: the grid's indices split statically
// over the OpenMP threads. Each index writes only its own outputs, so the
// result does not depend on the thread count.
#pragma once
#include <cstdint>

namespace attnres::kernels::cpu {

struct Grid {
  template <class Body>
  void operator()(int64_t n, const Body& body) const {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) body(i);
  }
};

}  // namespace attnres::kernels::cpu
