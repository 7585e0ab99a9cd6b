// The CUDA case of a backend switch in kernels/ops.cpp and kernels/memory.cpp:
//   case Backend::CUDA: ATTNRES_ON_CUDA("op", op(dev, ...));
// returns cuda::op(dev, ...) where this binary has the CUDA backend, and
// otherwise throws naming the op. Private to kernels/.
#pragma once
#include <stdexcept>
#include <string>

#ifdef ATTNRES_WITH_CUDA
#define ATTNRES_ON_CUDA(name, call) return cuda::call
#else
namespace attnres::kernels {
[[noreturn]] inline void not_built(const char* op) {
  throw std::runtime_error(std::string("kernels::") + op + ": the CUDA backend is not built into this binary");
}
}  // namespace attnres::kernels
#define ATTNRES_ON_CUDA(name, call) not_built(name)
#endif
