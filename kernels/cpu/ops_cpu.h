// The CPU backend of kernels/ops.h: the same ops with the same signatures and
// contracts (documented there), in namespace kernels::cpu so that another
// backend's namespace can sit beside it in one binary. Called only by the
// dispatch in kernels/ops.cpp.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/device.h"

namespace attnres::kernels::cpu {

void gemm(const Device& dev, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
          const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc);

void add_inplace(const Device& dev, float* y, const float* x, size_t n);
void add(const Device& dev, float* out, const float* a, const float* b, size_t n);

void embedding_forward(const Device& dev, float* out, const int32_t* tokens, const float* table,
                       int N, int d, int v0, int Vl);
void embedding_backward(const Device& dev, float* dtable, const float* dout,
                        const int32_t* tokens, int N, int d, int vocab, int v0, int Vl);

void rmsnorm_forward(const Device& dev, float* out, float* rstd, const float* x, const float* g,
                     int N, int d, float eps);
void rmsnorm_backward(const Device& dev, float* dx, float* dg, const float* dout, const float* x,
                      const float* g, const float* rstd, int N, int d);
void rms_inverse(const Device& dev, float* rstd, const float* x, int N, int d, float eps);

void rope_forward(const Device& dev, float* x, const float* cos_t, const float* sin_t, int B,
                  int T, int H, int hd);
void rope_backward(const Device& dev, float* dx, const float* cos_t, const float* sin_t, int B,
                   int T, int H, int hd);

void attention_forward(const Device& dev, float* out, float* att, const float* q, const float* k,
                       const float* v, int B, int T, int H, int hd);
void attention_backward(const Device& dev, float* dq, float* dk, float* dv, float* scratch,
                        const float* dout, const float* att, const float* q, const float* k,
                        const float* v, int B, int T, int H, int hd);

void attention_decode(const Device& dev, float* out, float* scores, const float* q, const float* kcache,
                      const float* vcache, int T, int H, int hd);

void swiglu_forward(const Device& dev, float* out, const float* gate, const float* up, size_t n);
void swiglu_backward(const Device& dev, float* dgate, float* dup, const float* dout,
                     const float* gate, const float* up, size_t n);

void attnres_forward(const Device& dev, float* h, float* alpha, float* uv,
                     const float* const* src, const float* const* src_rstd, int K,
                     const float* w, const float* g, int N, int d);
void attnres_backward(const Device& dev, float* const* dacc_src, float* dw, float* dg,
                      float* scratch, const float* dh, const float* alpha, const float* uv,
                      const float* const* src, const float* const* src_rstd, int K,
                      const float* w, const float* g, int N, int d);
size_t attnres_backward_scratch(int N, int K, int d);

void cross_entropy_row_max(const Device& dev, float* row_max, const float* logits, int N, int Vl);
void cross_entropy_row_sums(const Device& dev, float* sum_exp, float* target_logit,
                            const float* logits, const int32_t* targets, const float* row_max,
                            int N, int Vl, int v0, int V);
void cross_entropy_loss(const Device& dev, float* losses, const float* row_max, const float* sum_exp,
                        const float* target_logit, const int32_t* targets, int N);
void cross_entropy_backward(const Device& dev, float* dlogits, const float* logits,
                            const int32_t* targets, const float* row_max, const float* sum_exp,
                            int N, int Vl, int v0, float scale);
double sum(const Device& dev, const float* x, size_t n);

void adamw_update(const Device& dev, float* param, const float* grad, float* m, float* v,
                  size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                  int t);
double sum_squares(const Device& dev, const float* x, size_t n);
void scale_inplace(const Device& dev, float* x, float s, size_t n);

}  // namespace attnres::kernels::cpu
