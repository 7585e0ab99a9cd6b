// Measured machine peak for MFU: the machine gives no vendor FLOP rate, so
// MFU is defined against the GEMM rate of the precision in use, measured
// here with the best GEMM the runtime has for it.
#pragma once
#include <string>

#include "kernels/device.h"
#include "kernels/dtype.h"

namespace attnres::kernels {

// Times a few 1024x1024x1024 sgemm calls with `threads` threads (0 = all
// cores) after a warm-up and returns the median GFLOP/s. Restores the
// previous thread count. The CPU's peak (OpenBLAS's own threading).
double measure_sgemm_gflops(int threads);

// The same on `dev` through kernels::gemm (cuBLAS on CUDA) on fp32 or bf16
// operands, n x n x n, timed by events on its stream: a GPU's peak (the
// trainer uses n = 4096 there). Backend-neutral, so the CPU tests run the
// code a device runs.
double measure_gemm_gflops(const Device& dev, int n, DType operands = DType::F32);

// A CPU's peak for a training precision, with `threads` threads: fp32 by
// measure_sgemm_gflops, bf16 by kernels::gemm on bf16 operands (oneDNN,
// n = 1024). Restores the thread count. And what runs that GEMM, for the
// run's first line.
double measure_cpu_peak_gflops(DType precision, int threads);
std::string cpu_gemm_engine(DType precision);

}  // namespace attnres::kernels
