// CUDA and cuBLAS status codes as exceptions naming the call and the
// library's own message (and, for CUDA, how to find the op behind an
// asynchronous fault: kernels/cuda_debug.h).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "kernels/cuda_debug.h"

namespace attnres::kernels::cuda {

inline void check(cudaError_t e, const char* call) {
  if (e != cudaSuccess) throw std::runtime_error(cuda_error_message(call, cudaGetErrorString(e), cuda_debug()));
}

inline void check(cublasStatus_t s, const char* call) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuBLAS: ") + call + ": " + cublasGetStatusString(s));
}

}  // namespace attnres::kernels::cuda
