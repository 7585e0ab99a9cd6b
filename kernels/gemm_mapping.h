// Row-major GEMM as a column-major library (cuBLAS) computes it. A row-major
// matrix read column-major is its transpose, so C = op(A) op(B) in row-major
// is C^T = op(B)^T op(A)^T in column-major: the operands swap places, M and N
// swap, and the transpose flags and leading dimensions stay with their
// operand. A pure function, so the CPU tests check it by running OpenBLAS in
// column-major mode with its output (tests/kernels/test_gemm_mapping.cpp).
#pragma once

namespace attnres::kernels {

// C[m, n] (column-major, leading dimension ldc) = alpha * op(A) * op(B) + beta * C.
struct ColumnMajorGemm {
  bool trans_a, trans_b;
  int m, n, k;
  const float* A;
  int lda;
  const float* B;
  int ldb;
  float* C;
  int ldc;
};

// The arguments of kernels::gemm (row-major; ops.h) for a column-major call.
inline ColumnMajorGemm to_column_major(bool trans_a, bool trans_b, int M, int N, int K, const float* A, int lda,
                                       const float* B, int ldb, float* C, int ldc) {
  return {trans_b, trans_a, N, M, K, B, ldb, A, lda, C, ldc};
}

}  // namespace attnres::kernels
