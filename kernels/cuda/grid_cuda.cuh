// The CUDA runner of kernels/grid_ops.h: one thread per grid index, in blocks
// of kBlock threads, on the device's stream. The body is the one the CPU
// runner calls (an __host__ __device__ lambda, nvcc --extended-lambda).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_check.h"
#include "kernels/device.h"

namespace attnres::kernels::cuda {

template <class Body>
__global__ void grid_kernel(Body body, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) body(i);
}

struct Grid {
  const Device& dev;
  static constexpr int kBlock = 256;
  template <class Body>
  void operator()(int64_t n, const Body& body) const {
    if (n <= 0) return;
    const int64_t blocks = (n + kBlock - 1) / kBlock;
    grid_kernel<<<static_cast<unsigned>(blocks), kBlock, 0, static_cast<cudaStream_t>(dev.stream)>>>(body, n);
    check(cudaGetLastError(), "kernel launch");
  }
};

}  // namespace attnres::kernels::cuda
