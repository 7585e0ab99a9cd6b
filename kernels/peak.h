// Measured machine peak for MFU: the machine gives no vendor FLOP rate, so
// MFU is defined against the sgemm rate measured here.
#pragma once
#include "kernels/device.h"

namespace attnres::kernels {

// Times a few 1024x1024x1024 sgemm calls with `threads` threads (0 = all
// cores) after a warm-up and returns the median GFLOP/s. Restores the
// previous thread count. The CPU's peak (OpenBLAS's own threading).
double measure_sgemm_gflops(int threads);

// The same on `dev` through kernels::gemm (cuBLAS on CUDA), n x n x n, timed
// by events on its stream: a GPU's peak (the trainer uses n = 4096 there).
// Backend-neutral, so the CPU tests run the code a device runs.
double measure_gemm_gflops(const Device& dev, int n);

}  // namespace attnres::kernels
