// GEMM on cuBLAS: the row-major call of kernels/ops.h mapped to cuBLAS's
// column-major one by kernels/gemm_mapping.h (tested on the CPU), on the
// device's stream. One cuBLAS handle per device, made on first use.
#include <cublas_v2.h>

#include <map>
#include <mutex>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/gemm_mapping.h"

namespace attnres::kernels::cuda {

namespace {
cublasHandle_t handle_for(const Device& dev) {
  static std::mutex mu;
  static std::map<int, cublasHandle_t> handles;
  std::lock_guard<std::mutex> lock(mu);
  cublasHandle_t& h = handles[dev.ordinal];
  if (!h) check(cublasCreate(&h), "cublasCreate");
  return h;
}

// One row-major GEMM (ops.h) as a column-major cublasGemmEx on the device's
// stream: operands of type `ab`, fp32 C, the given compute type.
template <class T>
void gemm_ex(const Device& dev, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const T* A, int lda,
             const T* B, int ldb, float beta, float* C, int ldc, cudaDataType_t ab, cublasComputeType_t compute,
             const char* what) {
  if (M == 0 || N == 0) return;
  cublasHandle_t h = handle_for(dev);
  check(cublasSetStream(h, static_cast<cudaStream_t>(dev.stream)), "cublasSetStream");
  const auto g = to_column_major(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  check(cublasGemmEx(h, g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, g.m, g.n, g.k,
                     &alpha, g.A, ab, g.lda, g.B, ab, g.ldb, &beta, g.C, CUDA_R_32F, g.ldc, compute,
                     CUBLAS_GEMM_DEFAULT),
        what);
}
}  // namespace

// fp32: strict fp32, or with train.tf32 on TF32 tensor cores (inputs
// rounded to 10-bit mantissas, fp32 accumulation).
void gemm(const Device& dev, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  gemm_ex(dev, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, CUDA_R_32F,
          dev.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, "cublasGemmEx (fp32)");
}

// bf16 operands, fp32 accumulation and output (DESIGN §11).
void gemm(const Device& dev, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const bf16* A, int lda,
          const bf16* B, int ldb, float beta, float* C, int ldc) {
  gemm_ex(dev, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, CUDA_R_16BF, CUBLAS_COMPUTE_32F,
          "cublasGemmEx (bf16)");
}

void gemm_strided_batched(const Device& dev, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                          const float* A, int lda, int64_t stride_a, const float* B, int ldb, int64_t stride_b,
                          float beta, float* C, int ldc, int64_t stride_c, int batch) {
  if (M == 0 || N == 0 || batch == 0) return;
  cublasHandle_t h = handle_for(dev);
  check(cublasSetStream(h, static_cast<cudaStream_t>(dev.stream)), "cublasSetStream");
  const auto g = to_column_major(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, stride_a, stride_b,
                                            stride_c);
  check(cublasSgemmStridedBatched(h, g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                  g.m, g.n, g.k, &alpha, g.A, g.lda, g.stride_a, g.B, g.ldb, g.stride_b, &beta, g.C,
                                  g.ldc, g.stride_c, batch),
        "cublasSgemmStridedBatched");
}

}  // namespace attnres::kernels::cuda
