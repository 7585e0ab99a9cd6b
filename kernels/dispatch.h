// The CUDA case of a backend switch in kernels/ops.cpp and kernels/memory.cpp:
//   case Backend::CUDA: ATTNRES_ON_CUDA("op", op(dev, ...));
// returns cuda::op(dev, ...) where this binary has the CUDA backend, named
// in its errors and, under ATTNRES_CUDA_DEBUG=1, followed by a wait for
// dev's stream (kernels/cuda_debug.h); otherwise it throws naming the op.
// ATTNRES_CUDA_CALL is the call alone, as an expression; ATTNRES_ON_CUDA_HOST
// is for calls that issue nothing on a stream (named, never waited for).
// Private to kernels/.
#pragma once
#include <stdexcept>
#include <string>

#ifdef ATTNRES_WITH_CUDA
#include "kernels/cuda/memory_cuda.h"
#include "kernels/cuda_debug.h"
#define ATTNRES_CUDA_CALL(name, call) \
  run_op("kernels::" name, cuda_debug(), [&] { return cuda::call; }, [&] { return cuda::stream_error(dev); })
#define ATTNRES_ON_CUDA(name, call) return ATTNRES_CUDA_CALL(name, call)
#define ATTNRES_ON_CUDA_HOST(name, call) \
  return run_op("kernels::" name, false, [&] { return cuda::call; }, [] { return std::string(); })
#else
namespace attnres::kernels {
[[noreturn]] inline void not_built(const char* op) {
  throw std::runtime_error(std::string("kernels::") + op + ": the CUDA backend is not built into this binary");
}
}  // namespace attnres::kernels
#define ATTNRES_ON_CUDA(name, call) not_built(name)
#define ATTNRES_ON_CUDA_HOST(name, call) not_built(name)
#endif
