// The row-major -> column-major GEMM mapping the CUDA backend hands to cuBLAS,
// checked here by handing it to OpenBLAS in column-major mode: for every
// transpose pair, non-square shapes, leading dimensions wider than the
// matrices, and alpha/beta that are not 1/0, the result equals a float64
// row-major reference.
#include <cblas.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/gemm_mapping.h"

using namespace attnres::kernels;

namespace {

// Row-major C[M,N] = alpha op(A) op(B) + beta C in float64.
std::vector<double> reference(bool ta, bool tb, int M, int N, int K, float alpha, const std::vector<float>& A, int lda,
                              const std::vector<float>& B, int ldb, float beta, const std::vector<float>& C, int ldc) {
  std::vector<double> out(C.begin(), C.end());
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double s = 0;
      for (int p = 0; p < K; ++p) {
        const double a = ta ? A[size_t(p) * lda + i] : A[size_t(i) * lda + p];
        const double b = tb ? B[size_t(j) * ldb + p] : B[size_t(p) * ldb + j];
        s += a * b;
      }
      out[size_t(i) * ldc + j] = alpha * s + beta * double(C[size_t(i) * ldc + j]);
    }
  return out;
}

}  // namespace

TEST(GemmMapping, ColumnMajorOpenBlasWithMappedArgumentsEqualsRowMajor) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  struct Shape {
    int M, N, K, pad;  // pad: extra columns in every leading dimension
  };
  int checked = 0;
  for (const Shape& sh : {Shape{5, 3, 7, 0}, Shape{3, 8, 2, 4}, Shape{16, 1, 9, 3}, Shape{1, 13, 4, 1}})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const int M = sh.M, N = sh.N, K = sh.K;
        // Row-major storage: op(A) is M x K, so A is M x K (or K x M when transposed).
        const int a_rows = ta ? K : M, a_cols = ta ? M : K, b_rows = tb ? N : K, b_cols = tb ? K : N;
        const int lda = a_cols + sh.pad, ldb = b_cols + sh.pad, ldc = N + sh.pad;
        std::vector<float> A(size_t(a_rows) * lda), B(size_t(b_rows) * ldb), C(size_t(M) * ldc);
        for (float& x : A) x = u(rng);
        for (float& x : B) x = u(rng);
        for (float& x : C) x = u(rng);
        const float alpha = 0.75f, beta = -0.5f;
        const std::vector<double> want = reference(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        const auto g = to_column_major(ta, tb, M, N, K, A.data(), lda, B.data(), ldb, C.data(), ldc);
        cblas_sgemm(CblasColMajor, g.trans_a ? CblasTrans : CblasNoTrans, g.trans_b ? CblasTrans : CblasNoTrans, g.m,
                    g.n, g.k, alpha, g.A, g.lda, g.B, g.ldb, beta, g.C, g.ldc);
        for (int i = 0; i < M; ++i)
          for (int j = 0; j < ldc; ++j) {
            const size_t at = size_t(i) * ldc + j;
            // Padding columns are not part of C and must be untouched.
            EXPECT_NEAR(C[at], want[at], 1e-5) << "ta=" << ta << " tb=" << tb << " M=" << M << " N=" << N
                                                << " K=" << K << " at (" << i << ", " << j << ")";
          }
        ++checked;
      }
  EXPECT_EQ(checked, 16);
}

// Strided-batched (cuBLAS's cublasSgemmStridedBatched, for attention): the
// strides travel with their operands. Three batches of a non-square product
// with padded leading dimensions, each against the float64 reference.
TEST(GemmMapping, StridedBatchedStridesTravelWithTheirOperands) {
  std::mt19937 rng(4);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int M = 4, N = 6, K = 5, batch = 3, lda = K + 1, ldb = N + 2, ldc = N + 1;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const int a_rows = ta ? K : M, b_rows = tb ? N : K;
      const int lda_t = ta ? M + 1 : lda, ldb_t = tb ? K + 2 : ldb;
      const long long sa = (long long)a_rows * lda_t + 3, sb = (long long)b_rows * ldb_t + 1, sc = (long long)M * ldc + 2;
      std::vector<float> A(size_t(sa * batch)), B(size_t(sb * batch)), C(size_t(sc * batch));
      for (float& x : A) x = u(rng);
      for (float& x : B) x = u(rng);
      for (float& x : C) x = u(rng);
      std::vector<std::vector<double>> want;
      for (int i = 0; i < batch; ++i)
        want.push_back(reference(ta, tb, M, N, K, 1.0f, std::vector<float>(A.begin() + i * sa, A.begin() + (i + 1) * sa),
                                 lda_t, std::vector<float>(B.begin() + i * sb, B.begin() + (i + 1) * sb), ldb_t, 0.5f,
                                 std::vector<float>(C.begin() + i * sc, C.begin() + i * sc + M * ldc), ldc));
      const auto g = to_column_major(ta, tb, M, N, K, A.data(), lda_t, B.data(), ldb_t, C.data(), ldc, sa,
                                                sb, sc);
      for (int i = 0; i < batch; ++i)  // what cublasSgemmStridedBatched does, one batch at a time
        cblas_sgemm(CblasColMajor, g.trans_a ? CblasTrans : CblasNoTrans, g.trans_b ? CblasTrans : CblasNoTrans, g.m,
                    g.n, g.k, 1.0f, g.A + i * g.stride_a, g.lda, g.B + i * g.stride_b, g.ldb, 0.5f,
                    g.C + i * g.stride_c, g.ldc);
      for (int i = 0; i < batch; ++i)
        for (int r = 0; r < M; ++r)
          for (int c = 0; c < ldc; ++c)
            EXPECT_NEAR(C[size_t(i * sc + r * ldc + c)], want[size_t(i)][size_t(r * ldc + c)], 1e-5)
                << "ta=" << ta << " tb=" << tb << " batch " << i;
    }
}
