// The CUDA backend of kernels/ops.h: the ops it has, with the signatures and
// contracts of ops.h, in namespace kernels::cuda beside kernels::cpu. Called
// only by the dispatch in kernels/ops.cpp; an op missing here throws there.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/device.h"
#include "kernels/dtype.h"

namespace attnres::kernels::cuda {

void gemm(const Device& dev, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
          const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc);
void gemm(const Device& dev, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
          const bf16* A, int lda, const bf16* B, int ldb, float beta, float* C, int ldc);
void gemm_strided_batched(const Device& dev, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                          const float* A, int lda, int64_t stride_a, const float* B, int ldb, int64_t stride_b,
                          float beta, float* C, int ldc, int64_t stride_c, int batch);

// Causal attention: batched GEMMs around the score rows of grid_ops.h (kernels/cuda/attention.cu).
void attention_forward(const Device& dev, float* out, float* att, const float* q, const float* k, const float* v,
                       int B, int T, int H, int hd);
void attention_backward(const Device& dev, float* dq, float* dk, float* dv, float* scratch, const float* dout,
                        const float* att, const float* q, const float* k, const float* v, int B, int T, int H,
                        int hd);
// Flash attention: grid_ops.h's bodies (kernels/cuda/attention.cu).
void flash_attention_forward(const Device& dev, float* out, float* lse, const float* q, const float* k,
                             const float* v, int B, int T, int H, int hd);
void flash_attention_backward(const Device& dev, float* dq, float* dk, float* dv, float* delta, const float* dout,
                              const float* lse, const float* q, const float* k, const float* v, int B, int T, int H,
                              int hd);
void attention_decode(const Device& dev, float* out, float* scores, const float* q, const float* kcache,
                      const float* vcache, int T, int H, int hd);

// Single-source ops (kernels/grid_ops.h), in kernels/cuda/grid_ops.cu.
void add_inplace(const Device& dev, float* y, const float* x, size_t n, bool round);
void add(const Device& dev, float* out, const float* a, const float* b, size_t n, bool round);
void round_bf16_inplace(const Device& dev, float* x, size_t n);
void scale_inplace(const Device& dev, float* x, float s, size_t n);
void convert(const Device& dev, bf16* out, const float* in, size_t n);
void convert(const Device& dev, float* out, const bf16* in, size_t n);
void swiglu_forward(const Device& dev, float* out, const float* gate, const float* up, size_t n);
void swiglu_backward(const Device& dev, float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                     size_t n);
// bc1, bc2: AdamW's bias corrections, computed by the dispatch.
void adamw_update(const Device& dev, float* param, const float* grad, float* m, float* v, size_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, float bc1, float bc2);
void rmsnorm_forward(const Device& dev, float* out, float* rstd, const float* x, const float* g, int N, int d,
                     float eps);
void rms_inverse(const Device& dev, float* rstd, const float* x, int N, int d, float eps);
void add_rms_inverse(const Device& dev, float* out, float* rstd, const float* a, const float* b, int N, int d,
                     float eps, bool round);
void rope_forward(const Device& dev, float* x, const float* cos_t, const float* sin_t, int B, int T, int H, int hd);
void rope_backward(const Device& dev, float* dx, const float* cos_t, const float* sin_t, int B, int T, int H, int hd);
void embedding_forward(const Device& dev, float* out, const int32_t* tokens, const float* table, int N, int d, int v0,
                       int Vl);
void embedding_forward(const Device& dev, float* out, const int32_t* tokens, const bf16* table, int N, int d, int v0,
                       int Vl);
// Without the CPU's host check of the ids: the data loader checked them.
void embedding_backward(const Device& dev, float* dtable, const float* dout, const int32_t* tokens, int N, int d,
                        int v0, int Vl);
void rmsnorm_backward(const Device& dev, float* dx, float* dg, const float* dout, const float* x, const float* g,
                      const float* rstd, int N, int d, float* xdot);
// src, src_rstd and dacc_src: pointer arrays in device memory.
void attnres_block_forward(const Device& dev, float* const* h, float* const* lse, float* const* uv,
                           const float* const* src, const float* const* src_rstd, int K, const float* const* w,
                           const float* const* g, int S, int N, int d);
void attnres_merge_partial(const Device& dev, float* h, float* lse, const float* p, const float* p_rstd,
                           const float* w, const float* g, int N, int d, float* xn, float* rstd, const float* norm,
                           float eps);
void attnres_partial_backward(const Device& dev, float* dacc_p, float* dw, float* dg, float* scratch, const float* dh,
                              const float* sdot, const float* lse, const float* p, const float* p_rstd, const float* w,
                              const float* g, int N, int d, bool assign, bool round);
void attnres_block_backward(const Device& dev, float* const* dacc_src, float* const* dw, float* const* dg,
                            float* scratch, const float* const* dh, const float* const* sdot, const float* const* lse,
                            const float* const* uv, const float* const* src, const float* const* src_rstd, int K,
                            const float* const* w, const float* const* g, int S, int N, int d, bool assign, int s0,
                            const int* uv_k, bool round);
// Sums returned to the host: the partials copied back, the stream synchronized.
void sum(const Device& dev, double* acc, const float* x, size_t n);
void sum_squares(const Device& dev, double* out, double* partial, const float* x, size_t n);
void cross_entropy_row_max(const Device& dev, float* row_max, const float* logits, int N, int Vl);
// Without the CPU's host check of the targets: device ids were checked by the data loader.
void cross_entropy_row_sums(const Device& dev, float* sum_exp, float* target_logit, const float* logits,
                            const int32_t* targets, const float* row_max, int N, int Vl, int v0);
void cross_entropy_loss(const Device& dev, float* losses, const float* row_max, const float* sum_exp,
                        const float* target_logit, const int32_t* targets, int N);
void cross_entropy_backward(const Device& dev, float* dlogits, const float* logits, const int32_t* targets,
                            const float* row_max, const float* sum_exp, int N, int Vl, int v0, float scale);

}  // namespace attnres::kernels::cuda
