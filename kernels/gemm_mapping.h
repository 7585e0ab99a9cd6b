// Row-major GEMM as a column-major library (cuBLAS) computes it. A row-major
// matrix read column-major is its transpose, so C = op(A) op(B) in row-major
// is C^T = op(B)^T op(A)^T in column-major: the operands swap places, M and N
// swap, and the transpose flags and leading dimensions stay with their
// operand. A pure function, so the CPU tests check it by running OpenBLAS in
// column-major mode with its output (tests/kernels/test_gemm_mapping.cpp).
#pragma once

namespace attnres::kernels {

// C[m, n] (column-major, leading dimension ldc) = alpha * op(A) * op(B) + beta * C.
// Strided-batched: operand i at X + i · stride_x (strides stay with their operand).
// T is the operands' element type (float or bf16); C is always float.
template <class T>
struct ColumnMajorGemm {
  bool trans_a, trans_b;
  int m, n, k;
  const T* A;
  int lda;
  long long stride_a;
  const T* B;
  int ldb;
  long long stride_b;
  float* C;
  int ldc;
  long long stride_c;
};

// The arguments of kernels::gemm / gemm_strided_batched (row-major; ops.h)
// for a column-major call.
template <class T>
ColumnMajorGemm<T> to_column_major(bool trans_a, bool trans_b, int M, int N, int K, const T* A, int lda,
                                       const T* B, int ldb, float* C, int ldc, long long stride_a = 0,
                                       long long stride_b = 0, long long stride_c = 0) {
  return {trans_b, trans_a, N, M, K, B, ldb, stride_b, A, lda, stride_a, C, ldc, stride_c};
}

}  // namespace attnres::kernels
