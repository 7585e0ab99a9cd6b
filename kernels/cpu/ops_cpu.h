// The CPU backend of kernels/ops.h where it is not a single-source kernel of
// kernels/grid_ops.h: GEMM (OpenBLAS), attention (tiles of sgemm calls), the
// reductions over rows, and host-side checks of ids. Signatures and contracts
// as in ops.h; namespace kernels::cpu beside kernels::cuda. Called only by the
// dispatch in kernels/ops.cpp.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/device.h"

namespace attnres::kernels::cpu {

void gemm(const Device& dev, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
          const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc);

void embedding_backward(const Device& dev, float* dtable, const float* dout,
                        const int32_t* tokens, int N, int d, int vocab, int v0, int Vl);
// dg[i] += Σ_n dout[n,i] x[n,i] rstd[n] (RMSNorm's gain gradient).
void rmsnorm_gain_grad(float* dg, const float* dout, const float* x, const float* rstd, int N, int d);

void attention_forward(const Device& dev, float* out, float* att, const float* q, const float* k,
                       const float* v, int B, int T, int H, int hd);
void attention_backward(const Device& dev, float* dq, float* dk, float* dv, float* scratch,
                        const float* dout, const float* att, const float* q, const float* k,
                        const float* v, int B, int T, int H, int hd);
void attention_decode(const Device& dev, float* out, float* scores, const float* q, const float* kcache,
                      const float* vcache, int T, int H, int hd);

void attnres_forward(const Device& dev, float* h, float* alpha, float* uv,
                     const float* const* src, const float* const* src_rstd, int K,
                     const float* w, const float* g, int N, int d);
void attnres_backward(const Device& dev, float* const* dacc_src, float* dw, float* dg,
                      float* scratch, const float* dh, const float* alpha, const float* uv,
                      const float* const* src, const float* const* src_rstd, int K,
                      const float* w, const float* g, int N, int d);
size_t attnres_backward_scratch(int N, int K, int d);

// Throws naming the row if a target is outside [-1, V) (bad input from a data file).
void check_targets(const int32_t* targets, int N, int V);
double sum(const Device& dev, const float* x, size_t n);
double sum_squares(const Device& dev, const float* x, size_t n);

}  // namespace attnres::kernels::cpu
