// The CPU backend of kernels/ops.h where it is not a single-source kernel of
// kernels/grid_ops.h: GEMM (OpenBLAS and oneDNN), attention (tiles of sgemm calls), and
// host-side checks of ids. Signatures and contracts
// as in ops.h; namespace kernels::cpu beside kernels::cuda. Called only by the
// dispatch in kernels/ops.cpp.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/device.h"
#include "kernels/dtype.h"

namespace attnres::kernels::cpu {

void gemm(const Device& dev, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
          const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc);
void gemm(const Device& dev, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
          const bf16* A, int lda, const bf16* B, int ldb, float beta, float* C, int ldc);

void attention_forward(const Device& dev, float* out, float* att, const float* q, const float* k,
                       const float* v, int B, int T, int H, int hd);
void attention_backward(const Device& dev, float* dq, float* dk, float* dv, float* scratch,
                        const float* dout, const float* att, const float* q, const float* k,
                        const float* v, int B, int T, int H, int hd);
void attention_decode(const Device& dev, float* out, float* scores, const float* q, const float* kcache,
                      const float* vcache, int T, int H, int hd);

}  // namespace attnres::kernels::cpu
