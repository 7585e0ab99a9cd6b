// Causal attention on CUDA: the batched form of kernels/grid_ops.h with
// cuBLAS's strided-batched GEMM. The CPU tests run the same form with
// OpenBLAS (tests/kernels/test_attention_batched.cpp).
#include "kernels/cuda/grid_cuda.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/grid_ops.h"

namespace attnres::kernels::cuda {

namespace {
// gemm_strided_batched on `dev`, in the shape grid_ops.h's attention takes.
struct BatchedGemm {
  const Device& dev;
  void operator()(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, int64_t sa,
                  const float* B, int ldb, int64_t sb, float beta, float* C, int ldc, int64_t sc, int batch) const {
    cuda::gemm_strided_batched(dev, ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
  }
};
}  // namespace

void attention_forward(const Device& dev, float* out, float* att, const float* q, const float* k, const float* v,
                       int B, int T, int H, int hd) {
  grid::attention_forward_batched(Grid{dev}, BatchedGemm{dev}, out, att, q, k, v, B, T, H, hd);
}

void attention_backward(const Device& dev, float* dq, float* dk, float* dv, float* scratch, const float* dout,
                        const float* att, const float* q, const float* k, const float* v, int B, int T, int H,
                        int hd) {
  grid::attention_backward_batched(Grid{dev}, BatchedGemm{dev}, dq, dk, dv, scratch, dout, att, q, k, v, B, T, H, hd);
}

void flash_attention_forward(const Device& dev, float* out, float* lse, const float* q, const float* k,
                             const float* v, int B, int T, int H, int hd) {
  grid::flash_attention_forward(Grid{dev}, out, lse, q, k, v, B, T, H, hd);
}

void flash_attention_backward(const Device& dev, float* dq, float* dk, float* dv, float* delta, const float* dout,
                              const float* lse, const float* q, const float* k, const float* v, int B, int T, int H,
                              int hd) {
  grid::flash_attention_backward(Grid{dev}, dq, dk, dv, delta, dout, lse, q, k, v, B, T, H, hd);
}

void attention_decode(const Device& dev, float* out, float* scores, const float* q, const float* kcache,
                      const float* vcache, int T, int H, int hd) {
  grid::attention_decode_batched(Grid{dev}, BatchedGemm{dev}, out, scores, q, kcache, vcache, T, H, hd);
}

}  // namespace attnres::kernels::cuda
