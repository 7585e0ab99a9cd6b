// The CPU GEMM libraries behind cpu::gemm (kernels/cpu/ops_cpu.h): OpenBLAS
// for fp32 and oneDNN for bf16, each over the same fixed slices of C (oneDNN
// fp32 too, for the benchmark that compares them). Private to kernels/cpu.
#pragma once
#include <string>

#include "kernels/dtype.h"

namespace attnres::kernels::cpu {

// C is cut into slices of kGemmSlice rows (or columns, when it is wider than
// tall), each computed by one single-threaded library call: a library's own
// threading splits the work by the thread count, which changes the rounding
// of some outputs, and runs must not depend on train.threads.
constexpr int kGemmSlice = 128;

// Arguments and contract of kernels::gemm (kernels/ops.h).
void gemm_openblas(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                   const float* B, int ldb, float beta, float* C, int ldc);
void gemm_onednn(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc);
void gemm_onednn(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const bf16* A, int lda,
                 const bf16* B, int ldb, float beta, float* C, int ldc);
// What runs the GEMMs on `operands` on this CPU (oneDNN's implementation, or
// for bf16 the slow fallback), for the run's first line.
std::string onednn_gemm_engine(DType operands);

}  // namespace attnres::kernels::cpu
