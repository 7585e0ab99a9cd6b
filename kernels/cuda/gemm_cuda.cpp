// GEMM on cuBLASLt (fp32 and bf16 operands) and cuBLAS (attention's fp32
// strided batches): the row-major call of kernels/ops.h mapped to the
// libraries' column-major one by kernels/gemm_mapping.h (tested on the CPU),
// on the device's stream. Handles and the Lt workspace are made once per
// device; each GEMM shape's descriptors and algorithm are chosen once and
// reused, as the CPU's oneDNN primitives are.
#include <cublasLt.h>
#include <cublas_v2.h>

#include <map>
#include <mutex>
#include <tuple>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/device_overhead.h"
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

struct LtDevice {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
};

// One column-major GEMM shape on one device: C[m,n] = op(A) op(B), operands
// of type ab, fp32 C, computed in `compute`.
struct LtShape {
  int ordinal;
  bool ta, tb;
  int m, n, k, lda, ldb, ldc;
  cudaDataType_t ab;
  cublasComputeType_t compute;
  auto tie() const { return std::tie(ordinal, ta, tb, m, n, k, lda, ldb, ldc, ab, compute); }
  bool operator<(const LtShape& o) const { return tie() < o.tie(); }
};

struct LtPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

std::mutex lt_mu;  // guards the two maps below

LtDevice& lt_device(const Device& dev) {
  static std::map<int, LtDevice> devices;
  LtDevice& d = devices[dev.ordinal];
  if (!d.handle) {
    check(cublasLtCreate(&d.handle), "cublasLtCreate");
    check(cudaMalloc(&d.workspace, kLtWorkspaceBytes), "cudaMalloc (cuBLASLt workspace)");
  }
  return d;
}

// The descriptors of a shape and the algorithm cuBLASLt's heuristic ranks
// first for it (the same on every call, so a shape's rounding never changes).
LtPlan make_plan(cublasLtHandle_t h, const LtShape& s) {
  LtPlan p;
  check(cublasLtMatmulDescCreate(&p.desc, s.compute, CUDA_R_32F), "cublasLtMatmulDescCreate");
  const cublasOperation_t ta = s.ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = s.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  check(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)), "set TRANSA");
  check(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)), "set TRANSB");
  // Stored shapes: op(A) is m x k, op(B) is k x n.
  check(cublasLtMatrixLayoutCreate(&p.a, s.ab, s.ta ? s.k : s.m, s.ta ? s.m : s.k, s.lda), "layout A");
  check(cublasLtMatrixLayoutCreate(&p.b, s.ab, s.tb ? s.n : s.k, s.tb ? s.k : s.n, s.ldb), "layout B");
  check(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, s.m, s.n, s.ldc), "layout C");
  cublasLtMatmulPreference_t pref;
  check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  const size_t ws = kLtWorkspaceBytes;
  check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
        "set MAX_WORKSPACE_BYTES");
  cublasLtMatmulHeuristicResult_t best{};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(h, p.desc, p.a, p.b, p.c, p.c, pref, 1, &best, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  check(st, "cublasLtMatmulAlgoGetHeuristic");
  if (found == 0) check(CUBLAS_STATUS_NOT_SUPPORTED, "cublasLtMatmulAlgoGetHeuristic (no algorithm for the shape)");
  p.algo = best.algo;
  return p;
}

// One row-major GEMM (ops.h) as a column-major cublasLtMatmul on the
// device's stream.
template <class T>
void gemm_lt(const Device& dev, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const T* A, int lda,
             const T* B, int ldb, float beta, float* C, int ldc, cudaDataType_t ab, cublasComputeType_t compute,
             const char* what) {
  if (M == 0 || N == 0) return;
  const auto g = to_column_major(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  const LtShape shape{dev.ordinal, g.trans_a, g.trans_b, g.m, g.n, g.k, g.lda, g.ldb, g.ldc, ab, compute};
  LtDevice* d;
  const LtPlan* plan;
  {
    static std::map<LtShape, LtPlan> plans;
    std::lock_guard<std::mutex> lock(lt_mu);
    d = &lt_device(dev);
    auto it = plans.find(shape);
    if (it == plans.end()) it = plans.emplace(shape, make_plan(d->handle, shape)).first;
    plan = &it->second;
  }
  check(cublasLtMatmul(d->handle, plan->desc, &alpha, g.A, plan->a, g.B, plan->b, &beta, g.C, plan->c, g.C, plan->c,
                       &plan->algo, d->workspace, kLtWorkspaceBytes, static_cast<cudaStream_t>(dev.stream)),
        what);
}

}  // namespace

// fp32: strict fp32, or with train.tf32 on TF32 tensor cores (inputs
// rounded to 10-bit mantissas, fp32 accumulation).
void gemm(const Device& dev, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  gemm_lt(dev, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, CUDA_R_32F,
          dev.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, "cublasLtMatmul (fp32)");
}

// bf16 operands, fp32 accumulation and output (DESIGN §11).
void gemm(const Device& dev, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const bf16* A, int lda,
          const bf16* B, int ldb, float beta, float* C, int ldc) {
  gemm_lt(dev, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, CUDA_R_16BF, CUBLAS_COMPUTE_32F,
          "cublasLtMatmul (bf16)");
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
