// The single-source ops of kernels/grid_ops.h, launched on the device: the
// same bodies the CPU backend runs (and its tests check).
#include "kernels/cuda/grid_cuda.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/grid_ops.h"

namespace attnres::kernels::cuda {

void add_inplace(const Device& dev, float* y, const float* x, size_t n, bool round) {
  grid::add_inplace(Grid{dev}, y, x, n, round);
}
void add(const Device& dev, float* out, const float* a, const float* b, size_t n, bool round) {
  grid::add(Grid{dev}, out, a, b, n, round);
}
void round_bf16_inplace(const Device& dev, float* x, size_t n) { grid::round_bf16_inplace(Grid{dev}, x, n); }
void scale_inplace(const Device& dev, float* x, float s, size_t n) { grid::scale_inplace(Grid{dev}, x, s, n); }
void convert(const Device& dev, bf16* out, const float* in, size_t n) { grid::convert(Grid{dev}, out, in, n); }
void convert(const Device& dev, float* out, const bf16* in, size_t n) { grid::convert(Grid{dev}, out, in, n); }
void swiglu_forward(const Device& dev, float* out, const float* gate, const float* up, size_t n) {
  grid::swiglu_forward(Grid{dev}, out, gate, up, n);
}
void swiglu_backward(const Device& dev, float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                     size_t n) {
  grid::swiglu_backward(Grid{dev}, dgate, dup, dout, gate, up, n);
}
void adamw_update(const Device& dev, float* param, const float* grad, float* m, float* v, size_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, float bc1, float bc2) {
  grid::adamw_update(Grid{dev}, param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, bc1, bc2);
}
void rmsnorm_forward(const Device& dev, float* out, float* rstd, const float* x, const float* g, int N, int d,
                     float eps) {
  grid::rmsnorm_forward(Grid{dev}, out, rstd, x, g, N, d, eps);
}
void rms_inverse(const Device& dev, float* rstd, const float* x, int N, int d, float eps) {
  grid::rms_inverse(Grid{dev}, rstd, x, N, d, eps);
}
void add_rms_inverse(const Device& dev, float* out, float* rstd, const float* a, const float* b, int N, int d,
                     float eps, bool round) {
  grid::add_rms_inverse(Grid{dev}, out, rstd, a, b, N, d, eps, round);
}
void rope_forward(const Device& dev, float* x, const float* cos_t, const float* sin_t, int B, int T, int H, int hd) {
  grid::rope_apply<false>(Grid{dev}, x, cos_t, sin_t, B, T, H, hd);
}
void rope_backward(const Device& dev, float* dx, const float* cos_t, const float* sin_t, int B, int T, int H,
                   int hd) {
  grid::rope_apply<true>(Grid{dev}, dx, cos_t, sin_t, B, T, H, hd);
}
void embedding_forward(const Device& dev, float* out, const int32_t* tokens, const float* table, int N, int d, int v0,
                       int Vl) {
  grid::embedding_forward(Grid{dev}, out, tokens, table, N, d, v0, Vl);
}
void embedding_forward(const Device& dev, float* out, const int32_t* tokens, const bf16* table, int N, int d, int v0,
                       int Vl) {
  grid::embedding_forward(Grid{dev}, out, tokens, table, N, d, v0, Vl);
}
void embedding_backward(const Device& dev, float* dtable, const float* dout, const int32_t* tokens, int N, int d,
                        int v0, int Vl) {
  grid::embedding_backward(Grid{dev}, dtable, dout, tokens, N, d, v0, Vl);
}
void rmsnorm_backward(const Device& dev, float* dx, float* dg, const float* dout, const float* x, const float* g,
                      const float* rstd, int N, int d, float* xdot) {
  grid::rmsnorm_backward_dx(Grid{dev}, dx, xdot, dout, x, g, rstd, N, d);
  grid::rmsnorm_gain_grad(Grid{dev}, dg, dout, x, rstd, N, d);
}
void attnres_block_forward(const Device& dev, float* const* h, float* const* lse, float* const* uv,
                           const float* const* src, const float* const* src_rstd, int K, const float* const* w,
                           const float* const* g, int S, int N, int d) {
  grid::attnres_block_forward(Grid{dev}, h, lse, uv, src, src_rstd, K, w, g, S, N, d);
}
void attnres_merge_partial(const Device& dev, float* h, float* lse, const float* p, const float* p_rstd,
                           const float* w, const float* g, int N, int d, float* xn, float* rstd, const float* norm,
                           float eps) {
  grid::attnres_merge_partial(Grid{dev}, h, lse, p, p_rstd, w, g, N, d, xn, rstd, norm, eps);
}
void attnres_partial_backward(const Device& dev, float* dacc_p, float* dw, float* dg, float* scratch, const float* dh,
                              const float* sdot, const float* lse, const float* p, const float* p_rstd, const float* w,
                              const float* g, int N, int d, bool assign, bool round) {
  grid::attnres_partial_backward(Grid{dev}, dacc_p, dw, dg, scratch, dh, sdot, lse, p, p_rstd, w, g, N, d, assign, round);
}
void attnres_block_backward(const Device& dev, float* const* dacc_src, float* const* dw, float* const* dg,
                            float* scratch, const float* const* dh, const float* const* sdot, const float* const* lse,
                            const float* const* uv, const float* const* src, const float* const* src_rstd, int K,
                            const float* const* w, const float* const* g, int S, int N, int d, bool assign, int s0,
                            const int* uv_k, bool round) {
  grid::attnres_block_backward(Grid{dev}, dacc_src, dw, dg, scratch, dh, sdot, lse, uv, src, src_rstd, K, w, g, S, N,
                               d, assign, s0, uv_k, round);
}
void sum(const Device& dev, double* acc, const float* x, size_t n) { grid::sum_serial(Grid{dev}, acc, x, n); }
void sum_squares(const Device& dev, double* out, double* partial, const float* x, size_t n) {
  grid::sum_squares(Grid{dev}, out, partial, x, n);
}

void cross_entropy_row_max(const Device& dev, float* row_max, const float* logits, int N, int Vl) {
  grid::cross_entropy_row_max(Grid{dev}, row_max, logits, N, Vl);
}
void cross_entropy_row_sums(const Device& dev, float* sum_exp, float* target_logit, const float* logits,
                            const int32_t* targets, const float* row_max, int N, int Vl, int v0) {
  grid::cross_entropy_row_sums(Grid{dev}, sum_exp, target_logit, logits, targets, row_max, N, Vl, v0);
}
void cross_entropy_loss(const Device& dev, float* losses, const float* row_max, const float* sum_exp,
                        const float* target_logit, const int32_t* targets, int N) {
  grid::cross_entropy_loss(Grid{dev}, losses, row_max, sum_exp, target_logit, targets, N);
}
void cross_entropy_backward(const Device& dev, float* dlogits, const float* logits, const int32_t* targets,
                            const float* row_max, const float* sum_exp, int N, int Vl, int v0, float scale) {
  grid::cross_entropy_backward(Grid{dev}, dlogits, logits, targets, row_max, sum_exp, N, Vl, v0, scale);
}

}  // namespace attnres::kernels::cuda
