// The backend dispatch of kernels/ops.h: each op runs on dev.backend. The
// single-source kernels (kernels/grid_ops.h) run on the CPU runner here or
// on CUDA (ATTNRES_WITH_CUDA) in kernels/cuda; GEMM and attention have a
// backend implementation each.
#include "kernels/ops.h"

#include <cassert>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/grid_cpu.h"
#include "kernels/cpu/ops_cpu.h"
#include "kernels/dispatch.h"
#include "kernels/grid_ops.h"
#ifdef ATTNRES_WITH_CUDA
#include "kernels/cuda/ops_cuda.h"
#endif

namespace attnres::kernels {

// ---- host functions (no device) ---------------------------------------------
// Angles in double: t * theta^(-2i/hd) loses precision in float for large t.
void rope_tables(float* cos_t, float* sin_t, int T, int hd, float theta) {
  assert(hd % 2 == 0);
  const int half = hd / 2;
  for (int t = 0; t < T; t++)
    for (int i = 0; i < half; i++) {
      double ang = (double)t * std::pow((double)theta, -2.0 * i / hd);
      cos_t[t * half + i] = (float)std::cos(ang);
      sin_t[t * half + i] = (float)std::sin(ang);
    }
}

size_t attnres_partial_backward_scratch(int N, int d) { return grid::attnres_partial_backward_scratch(N, d); }
size_t attnres_block_backward_scratch(int N, int S, int d) { return grid::attnres_block_backward_scratch(N, S, d); }

// ---- GEMM: OpenBLAS / oneDNN or cuBLAS --------------------------------------------------------
void gemm(const Device& dev, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
          const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  switch (dev.backend) {
    case Backend::CPU: return cpu::gemm(dev, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    case Backend::CUDA:
      ATTNRES_ON_CUDA("gemm", gemm(dev, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc));
  }
}

void gemm(const Device& dev, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const bf16* A, int lda,
          const bf16* B, int ldb, float beta, float* C, int ldc) {
  switch (dev.backend) {
    case Backend::CPU: return cpu::gemm(dev, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    case Backend::CUDA:
      ATTNRES_ON_CUDA("gemm", gemm(dev, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc));
  }
}

void gemm_strided_batched(const Device& dev, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                          const float* A, int lda, int64_t stride_a, const float* B, int ldb, int64_t stride_b,
                          float beta, float* C, int ldc, int64_t stride_c, int batch) {
  switch (dev.backend) {
    case Backend::CPU:
      for (int i = 0; i < batch; i++)
        cpu::gemm(dev, trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta,
                  C + i * stride_c, ldc);
      return;
    case Backend::CUDA:
      ATTNRES_ON_CUDA("gemm_strided_batched", gemm_strided_batched(dev, trans_a, trans_b, M, N, K, alpha, A, lda,
                                                                   stride_a, B, ldb, stride_b, beta, C, ldc,
                                                                   stride_c, batch));
  }
}

// ---- composed of other ops: the same on every backend ----------------------------
// y = x W^T, dx = dy W, dW += dy^T x, for either operand type.
template <class T>
static void linear_forward_of(const Device& dev, float* y, const T* x, const T* W, int N, int in, int out) {
  gemm(dev, false, true, N, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
}
template <class T>
static void linear_backward_of(const Device& dev, float* dx, float* dW, const T* dy, const T* x, const T* W, int N,
                               int in, int out, bool accumulate_dx) {
  if (dx) gemm(dev, false, false, N, in, out, 1.0f, dy, out, W, in, accumulate_dx ? 1.0f : 0.0f, dx, in);
  if (dW) gemm(dev, true, false, out, in, N, 1.0f, dy, out, x, in, 1.0f, dW, in);
}

void linear_forward(const Device& dev, float* y, const float* x, const float* W, int N, int in, int out) {
  linear_forward_of(dev, y, x, W, N, in, out);
}
void linear_forward(const Device& dev, float* y, const bf16* x, const bf16* W, int N, int in, int out) {
  linear_forward_of(dev, y, x, W, N, in, out);
}
void linear_backward(const Device& dev, float* dx, float* dW, const float* dy, const float* x, const float* W, int N,
                     int in, int out, bool accumulate_dx) {
  linear_backward_of(dev, dx, dW, dy, x, W, N, in, out, accumulate_dx);
}
void linear_backward(const Device& dev, float* dx, float* dW, const bf16* dy, const bf16* x, const bf16* W, int N,
                     int in, int out, bool accumulate_dx) {
  linear_backward_of(dev, dx, dW, dy, x, W, N, in, out, accumulate_dx);
}

// ---- device ops -------------------------------------------------------------------
void add_inplace(const Device& dev, float* y, const float* x, size_t n, bool round) {
  switch (dev.backend) {
    case Backend::CPU: return grid::add_inplace(cpu::Grid{}, y, x, n, round);
    case Backend::CUDA: ATTNRES_ON_CUDA("add_inplace", add_inplace(dev, y, x, n, round));
  }
}

void add(const Device& dev, float* out, const float* a, const float* b, size_t n, bool round) {
  switch (dev.backend) {
    case Backend::CPU: return grid::add(cpu::Grid{}, out, a, b, n, round);
    case Backend::CUDA: ATTNRES_ON_CUDA("add", add(dev, out, a, b, n, round));
  }
}

void round_bf16_inplace(const Device& dev, float* x, size_t n) {
  switch (dev.backend) {
    case Backend::CPU: return grid::round_bf16_inplace(cpu::Grid{}, x, n);
    case Backend::CUDA: ATTNRES_ON_CUDA("round_bf16_inplace", round_bf16_inplace(dev, x, n));
  }
}

void embedding_forward(const Device& dev, float* out, const int32_t* tokens, const float* table,
                       int N, int d, int v0, int Vl) {
  switch (dev.backend) {
    case Backend::CPU: return grid::embedding_forward(cpu::Grid{}, out, tokens, table, N, d, v0, Vl);
    case Backend::CUDA: ATTNRES_ON_CUDA("embedding_forward", embedding_forward(dev, out, tokens, table, N, d, v0, Vl));
  }
}
void embedding_forward(const Device& dev, float* out, const int32_t* tokens, const bf16* table,
                       int N, int d, int v0, int Vl) {
  switch (dev.backend) {
    case Backend::CPU: return grid::embedding_forward(cpu::Grid{}, out, tokens, table, N, d, v0, Vl);
    case Backend::CUDA: ATTNRES_ON_CUDA("embedding_forward", embedding_forward(dev, out, tokens, table, N, d, v0, Vl));
  }
}

void embedding_backward(const Device& dev, float* dtable, const float* dout, const int32_t* tokens,
                        int N, int d, int vocab, int v0, int Vl) {
  switch (dev.backend) {
    case Backend::CPU:
      check_tokens(tokens, N, vocab);
      return grid::embedding_backward(cpu::Grid{}, dtable, dout, tokens, N, d, v0, Vl);
    case Backend::CUDA:
      // Device ids cannot be read here: DeviceBatch checked them before their copy.
      ATTNRES_ON_CUDA("embedding_backward", embedding_backward(dev, dtable, dout, tokens, N, d, v0, Vl));
  }
}

void rmsnorm_forward(const Device& dev, float* out, float* rstd, const float* x, const float* g,
                     int N, int d, float eps) {
  switch (dev.backend) {
    case Backend::CPU: return grid::rmsnorm_forward(cpu::Grid{}, out, rstd, x, g, N, d, eps);
    case Backend::CUDA: ATTNRES_ON_CUDA("rmsnorm_forward", rmsnorm_forward(dev, out, rstd, x, g, N, d, eps));
  }
}

void rmsnorm_backward(const Device& dev, float* dx, float* dg, const float* dout, const float* x,
                      const float* g, const float* rstd, int N, int d, float* xdot) {
  switch (dev.backend) {
    case Backend::CPU:
      grid::rmsnorm_backward_dx(cpu::Grid{}, dx, xdot, dout, x, g, rstd, N, d);
      return grid::rmsnorm_gain_grad(cpu::Grid{}, dg, dout, x, rstd, N, d);
    case Backend::CUDA: ATTNRES_ON_CUDA("rmsnorm_backward", rmsnorm_backward(dev, dx, dg, dout, x, g, rstd, N, d, xdot));
  }
}

void rms_inverse(const Device& dev, float* rstd, const float* x, int N, int d, float eps) {
  switch (dev.backend) {
    case Backend::CPU: return grid::rms_inverse(cpu::Grid{}, rstd, x, N, d, eps);
    case Backend::CUDA: ATTNRES_ON_CUDA("rms_inverse", rms_inverse(dev, rstd, x, N, d, eps));
  }
}

void add_rms_inverse(const Device& dev, float* out, float* rstd, const float* a, const float* b, int N, int d,
                     float eps, bool round) {
  switch (dev.backend) {
    case Backend::CPU: return grid::add_rms_inverse(cpu::Grid{}, out, rstd, a, b, N, d, eps, round);
    case Backend::CUDA: ATTNRES_ON_CUDA("add_rms_inverse", add_rms_inverse(dev, out, rstd, a, b, N, d, eps, round));
  }
}

void rope_forward(const Device& dev, float* x, const float* cos_t, const float* sin_t, int B,
                  int T, int H, int hd) {
  switch (dev.backend) {
    case Backend::CPU: return grid::rope_apply<false>(cpu::Grid{}, x, cos_t, sin_t, B, T, H, hd);
    case Backend::CUDA: ATTNRES_ON_CUDA("rope_forward", rope_forward(dev, x, cos_t, sin_t, B, T, H, hd));
  }
}

void rope_backward(const Device& dev, float* dx, const float* cos_t, const float* sin_t, int B,
                   int T, int H, int hd) {
  switch (dev.backend) {
    case Backend::CPU: return grid::rope_apply<true>(cpu::Grid{}, dx, cos_t, sin_t, B, T, H, hd);
    case Backend::CUDA: ATTNRES_ON_CUDA("rope_backward", rope_backward(dev, dx, cos_t, sin_t, B, T, H, hd));
  }
}

void attention_forward(const Device& dev, float* out, float* att, const float* q, const float* k,
                       const float* v, int B, int T, int H, int hd) {
  switch (dev.backend) {
    case Backend::CPU: return cpu::attention_forward(dev, out, att, q, k, v, B, T, H, hd);
    case Backend::CUDA: ATTNRES_ON_CUDA("attention_forward", attention_forward(dev, out, att, q, k, v, B, T, H, hd));
  }
}

void attention_decode(const Device& dev, float* out, float* scores, const float* q, const float* kcache,
                      const float* vcache, int T, int H, int hd) {
  switch (dev.backend) {
    case Backend::CPU: return cpu::attention_decode(dev, out, scores, q, kcache, vcache, T, H, hd);
    case Backend::CUDA: ATTNRES_ON_CUDA("attention_decode", attention_decode(dev, out, scores, q, kcache, vcache, T, H, hd));
  }
}

void attention_backward(const Device& dev, float* dq, float* dk, float* dv, float* scratch,
                        const float* dout, const float* att, const float* q, const float* k,
                        const float* v, int B, int T, int H, int hd) {
  switch (dev.backend) {
    case Backend::CPU: return cpu::attention_backward(dev, dq, dk, dv, scratch, dout, att, q, k, v, B, T, H, hd);
    case Backend::CUDA: ATTNRES_ON_CUDA("attention_backward", attention_backward(dev, dq, dk, dv, scratch, dout, att, q, k, v, B, T, H, hd));
  }
}

void flash_attention_forward(const Device& dev, float* out, float* lse, const float* q, const float* k,
                             const float* v, int B, int T, int H, int hd) {
  switch (dev.backend) {
    case Backend::CPU: return grid::flash_attention_forward(cpu::Grid{}, out, lse, q, k, v, B, T, H, hd);
    case Backend::CUDA:
      ATTNRES_ON_CUDA("flash_attention_forward", flash_attention_forward(dev, out, lse, q, k, v, B, T, H, hd));
  }
}

void flash_attention_backward(const Device& dev, float* dq, float* dk, float* dv, float* delta, const float* dout,
                              const float* lse, const float* q, const float* k, const float* v, int B, int T, int H,
                              int hd) {
  switch (dev.backend) {
    case Backend::CPU:
      return grid::flash_attention_backward(cpu::Grid{}, dq, dk, dv, delta, dout, lse, q, k, v, B, T, H, hd);
    case Backend::CUDA:
      ATTNRES_ON_CUDA("flash_attention_backward",
                      flash_attention_backward(dev, dq, dk, dv, delta, dout, lse, q, k, v, B, T, H, hd));
  }
}

void swiglu_forward(const Device& dev, float* out, const float* gate, const float* up, size_t n) {
  switch (dev.backend) {
    case Backend::CPU: return grid::swiglu_forward(cpu::Grid{}, out, gate, up, n);
    case Backend::CUDA: ATTNRES_ON_CUDA("swiglu_forward", swiglu_forward(dev, out, gate, up, n));
  }
}

void swiglu_backward(const Device& dev, float* dgate, float* dup, const float* dout, const float* gate,
                     const float* up, size_t n) {
  switch (dev.backend) {
    case Backend::CPU: return grid::swiglu_backward(cpu::Grid{}, dgate, dup, dout, gate, up, n);
    case Backend::CUDA: ATTNRES_ON_CUDA("swiglu_backward", swiglu_backward(dev, dgate, dup, dout, gate, up, n));
  }
}

void attnres_block_forward(const Device& dev, float* const* h, float* const* lse, float* const* uv,
                           const float* const* src, const float* const* src_rstd, int K, const float* const* w,
                           const float* const* g, int S, int N, int d) {
  switch (dev.backend) {
    case Backend::CPU: return grid::attnres_block_forward(cpu::Grid{}, h, lse, uv, src, src_rstd, K, w, g, S, N, d);
    case Backend::CUDA:
      ATTNRES_ON_CUDA("attnres_block_forward",
                      attnres_block_forward(dev, h, lse, uv, src, src_rstd, K, w, g, S, N, d));
  }
}

void attnres_merge_partial(const Device& dev, float* h, float* lse, const float* p, const float* p_rstd,
                           const float* w, const float* g, int N, int d, float* xn, float* rstd, const float* norm,
                           float eps) {
  switch (dev.backend) {
    case Backend::CPU:
      return grid::attnres_merge_partial(cpu::Grid{}, h, lse, p, p_rstd, w, g, N, d, xn, rstd, norm, eps);
    case Backend::CUDA:
      ATTNRES_ON_CUDA("attnres_merge_partial",
                      attnres_merge_partial(dev, h, lse, p, p_rstd, w, g, N, d, xn, rstd, norm, eps));
  }
}

void attnres_partial_backward(const Device& dev, float* dacc_p, float* dw, float* dg, float* scratch, const float* dh,
                              const float* sdot, const float* lse, const float* p, const float* p_rstd, const float* w,
                              const float* g, int N, int d, bool assign, bool round) {
  switch (dev.backend) {
    case Backend::CPU:
      return grid::attnres_partial_backward(cpu::Grid{}, dacc_p, dw, dg, scratch, dh, sdot, lse, p, p_rstd, w, g, N, d,
                                            assign, round);
    case Backend::CUDA:
      ATTNRES_ON_CUDA("attnres_partial_backward", attnres_partial_backward(dev, dacc_p, dw, dg, scratch, dh, sdot, lse, p,
                                                                         p_rstd, w, g, N, d, assign, round));
  }
}

void attnres_block_backward(const Device& dev, float* const* dacc_src, float* const* dw, float* const* dg,
                            float* scratch, const float* const* dh, const float* const* sdot, const float* const* lse,
                            const float* const* uv, const float* const* src, const float* const* src_rstd, int K,
                            const float* const* w, const float* const* g, int S, int N, int d, bool assign, int s0,
                            const int* uv_k, bool round) {
  switch (dev.backend) {
    case Backend::CPU:
      return grid::attnres_block_backward(cpu::Grid{}, dacc_src, dw, dg, scratch, dh, sdot, lse, uv, src, src_rstd,
                                          K, w, g, S, N, d, assign, s0, uv_k, round);
    case Backend::CUDA:
      ATTNRES_ON_CUDA("attnres_block_backward",
                      attnres_block_backward(dev, dacc_src, dw, dg, scratch, dh, sdot, lse, uv, src, src_rstd, K, w, g,
                                             S, N, d, assign, s0, uv_k, round));
  }
}

void cross_entropy_row_max(const Device& dev, float* row_max, const float* logits, int N, int Vl) {
  switch (dev.backend) {
    case Backend::CPU: return grid::cross_entropy_row_max(cpu::Grid{}, row_max, logits, N, Vl);
    case Backend::CUDA: ATTNRES_ON_CUDA("cross_entropy_row_max", cross_entropy_row_max(dev, row_max, logits, N, Vl));
  }
}

void cross_entropy_row_sums(const Device& dev, float* sum_exp, float* target_logit, const float* logits,
                            const int32_t* targets, const float* row_max, int N, int Vl, int v0, int V) {
  switch (dev.backend) {
    case Backend::CPU:
      check_targets(targets, N, V);
      return grid::cross_entropy_row_sums(cpu::Grid{}, sum_exp, target_logit, logits, targets, row_max, N, Vl, v0);
    case Backend::CUDA:
      // Device targets cannot be read here: DeviceBatch checked them before their copy.
      ATTNRES_ON_CUDA("cross_entropy_row_sums",
                      cross_entropy_row_sums(dev, sum_exp, target_logit, logits, targets, row_max, N, Vl, v0));
  }
}

void cross_entropy_loss(const Device& dev, float* losses, const float* row_max, const float* sum_exp,
                        const float* target_logit, const int32_t* targets, int N) {
  switch (dev.backend) {
    case Backend::CPU: return grid::cross_entropy_loss(cpu::Grid{}, losses, row_max, sum_exp, target_logit, targets, N);
    case Backend::CUDA:
      ATTNRES_ON_CUDA("cross_entropy_loss", cross_entropy_loss(dev, losses, row_max, sum_exp, target_logit, targets, N));
  }
}

void cross_entropy_backward(const Device& dev, float* dlogits, const float* logits, const int32_t* targets,
                            const float* row_max, const float* sum_exp, int N, int Vl, int v0, float scale) {
  switch (dev.backend) {
    case Backend::CPU:
      return grid::cross_entropy_backward(cpu::Grid{}, dlogits, logits, targets, row_max, sum_exp, N, Vl, v0, scale);
    case Backend::CUDA:
      ATTNRES_ON_CUDA("cross_entropy_backward",
                      cross_entropy_backward(dev, dlogits, logits, targets, row_max, sum_exp, N, Vl, v0, scale));
  }
}

void sum(const Device& dev, double* acc, const float* x, size_t n) {
  switch (dev.backend) {
    case Backend::CPU: return grid::sum_serial(cpu::Grid{}, acc, x, n);
    case Backend::CUDA: ATTNRES_ON_CUDA("sum", sum(dev, acc, x, n));
  }
}

void adamw_update(const Device& dev, float* param, const float* grad, float* m, float* v, size_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int t) {
  assert(t >= 1);
  const float bc1 = 1.0f - (float)std::pow((double)beta1, t);  // bias corrections, once per call
  const float bc2 = 1.0f - (float)std::pow((double)beta2, t);
  switch (dev.backend) {
    case Backend::CPU:
      return grid::adamw_update(cpu::Grid{}, param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, bc1, bc2);
    case Backend::CUDA:
      ATTNRES_ON_CUDA("adamw_update", adamw_update(dev, param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay,
                                                   bc1, bc2));
  }
}

void sum_squares(const Device& dev, double* out, double* partial, const float* x, size_t n) {
  switch (dev.backend) {
    case Backend::CPU: return grid::sum_squares(cpu::Grid{}, out, partial, x, n);
    case Backend::CUDA: ATTNRES_ON_CUDA("sum_squares", sum_squares(dev, out, partial, x, n));
  }
}
size_t sum_squares_scratch(size_t n) { return grid::sum_groups(n); }

void convert(const Device& dev, bf16* out, const float* in, size_t n) {
  switch (dev.backend) {
    case Backend::CPU: return grid::convert(cpu::Grid{}, out, in, n);
    case Backend::CUDA: ATTNRES_ON_CUDA("convert", convert(dev, out, in, n));
  }
}

void convert(const Device& dev, float* out, const bf16* in, size_t n) {
  switch (dev.backend) {
    case Backend::CPU: return grid::convert(cpu::Grid{}, out, in, n);
    case Backend::CUDA: ATTNRES_ON_CUDA("convert", convert(dev, out, in, n));
  }
}

void scale_inplace(const Device& dev, float* x, float s, size_t n) {
  switch (dev.backend) {
    case Backend::CPU: return grid::scale_inplace(cpu::Grid{}, x, s, n);
    case Backend::CUDA: ATTNRES_ON_CUDA("scale_inplace", scale_inplace(dev, x, s, n));
  }
}
}  // namespace attnres::kernels
