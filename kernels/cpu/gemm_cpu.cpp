// GEMM on OpenBLAS, in fixed slices so the result does not depend on the
// thread count.
#include <cblas.h>

#include <algorithm>
#include <cassert>

#include "kernels/cpu/ops_cpu.h"
#include "kernels/cpu/parallel_cpu.h"

namespace attnres::kernels::cpu {

// OpenBLAS's own threading splits the work by the thread count, which changes
// the rounding of some outputs; runs must not depend on train.threads (a
// pipelined run with fewer threads per rank must equal the single-process
// run). So C is cut into fixed slices of kGemmSlice rows (or columns, when
// it is wider than tall), each computed by a single-threaded sgemm.
constexpr int kGemmSlice = 128;

void gemm(const Device& dev, bool trans_a, bool trans_b, int M, int N, int K,
          float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc) {
  assert(dev.backend == Backend::CPU);
  if (M == 0 || N == 0) return;
  const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
  const bool by_rows = M >= N;
  const int len = by_rows ? M : N;
  cpu::blas_tasks((len + kGemmSlice - 1) / kGemmSlice, [&](int s) {
    const int o0 = s * kGemmSlice, w = std::min(kGemmSlice, len - o0);
    if (by_rows)
      cblas_sgemm(CblasRowMajor, ta, tb, w, N, K, alpha,
                  trans_a ? A + o0 : A + (size_t)o0 * lda, lda, B, ldb, beta,
                  C + (size_t)o0 * ldc, ldc);
    else
      cblas_sgemm(CblasRowMajor, ta, tb, M, w, K, alpha, A, lda,
                  trans_b ? B + (size_t)o0 * ldb : B + o0, ldb, beta, C + o0, ldc);
  });
}

}  // namespace attnres::kernels::cpu
