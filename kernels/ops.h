// Backend-neutral math on raw device pointers and sizes. Every op has an
// explicit forward and backward (as in llm.c). Tensors are row-major float32,
// or bf16 where a signature says so (kernels/dtype.h).
// N = number of token rows (microbatch b * seq_len T) unless stated.
// Each op runs on dev's backend: kernels/ops.cpp dispatches to kernels/cpu,
// or to kernels/cuda where the CUDA backend is built in (elsewhere a CUDA
// device is refused with a message saying so).
//
// Conventions:
// - Backward functions ACCUMULATE (+=) into parameter gradients and into
//   input gradients whose name starts with "dacc_" (gradients that receive
//   contributions from several consumers); other outputs are overwritten.
// - Reductions over token rows (parameter gradients of norms, depth-attention
//   queries, embedding) are computed in fixed-size row groups summed in a fixed
//   order, so results are bitwise independent of the thread count.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/device.h"
#include "kernels/dtype.h"
#include "kernels/limits.h"

namespace attnres::kernels {

// ---- dense -------------------------------------------------------------
// C[M,N] = alpha * op(A) * op(B) + beta * C, row-major; op(X) = X or X^T.
// A is [M,K] (or [K,M] when trans_a), B is [K,N] (or [N,K] when trans_b).
void gemm(const Device& dev, bool trans_a, bool trans_b, int M, int N, int K,
          float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc);
// The same with bf16 operands, products accumulated in fp32 into the fp32 C
// (the mixed-precision GEMM, DESIGN §11): oneDNN on the CPU, cuBLAS on CUDA.
void gemm(const Device& dev, bool trans_a, bool trans_b, int M, int N, int K,
          float alpha, const bf16* A, int lda, const bf16* B, int ldb,
          float beta, float* C, int ldc);

// For i < batch: C_i = alpha op(A_i) op(B_i) + beta C_i as gemm, with
// X_i = X + i · stride_x (strides in floats).
void gemm_strided_batched(const Device& dev, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                          const float* A, int lda, int64_t stride_a, const float* B, int ldb, int64_t stride_b,
                          float beta, float* C, int ldc, int64_t stride_c, int batch);

// y[N,out] = x[N,in] W^T with W [out,in] (PyTorch Linear layout).
void linear_forward(const Device& dev, float* y, const float* x, const float* W,
                    int N, int in, int out);
// dx[N,in] = dy W (overwrite, or accumulate when accumulate_dx);
// dW[out,in] += dy^T x. Either of dx, dW may be null to skip it.
void linear_backward(const Device& dev, float* dx, float* dW, const float* dy,
                     const float* x, const float* W, int N, int in, int out,
                     bool accumulate_dx);
// The same on bf16 operands (fp32 accumulation, fp32 y, dx and dW).
void linear_forward(const Device& dev, float* y, const bf16* x, const bf16* W, int N, int in, int out);
void linear_backward(const Device& dev, float* dx, float* dW, const bf16* dy, const bf16* x, const bf16* W, int N,
                     int in, int out, bool accumulate_dx);

// ---- elementwise ---------------------------------------------------------
// y += x and out = a + b; with `round`, the sums rounded to bf16 values (the
// residual stream of a bf16 run and its gradients, DESIGN §11).
void add_inplace(const Device& dev, float* y, const float* x, size_t n, bool round = false);
void add(const Device& dev, float* out, const float* a, const float* b, size_t n, bool round = false);
// x = x rounded to the nearest bf16 value, kept in float.
void round_bf16_inplace(const Device& dev, float* x, size_t n);
// out = in in the other precision (to bf16: round to nearest even).
void convert(const Device& dev, bf16* out, const float* in, size_t n);
void convert(const Device& dev, float* out, const bf16* in, size_t n);

// ---- embedding -----------------------------------------------------------
// The table holds vocabulary rows [v0, v0 + Vl) (a tensor-parallel shard; tp = 1:
// v0 = 0, Vl = V). Tokens outside the shard give zero rows in the forward and
// no gradient in the backward.
void embedding_forward(const Device& dev, float* out, const int32_t* tokens,
                       const float* table, int N, int d, int v0, int Vl);
// A bf16 run's table: the rows widened to fp32.
void embedding_forward(const Device& dev, float* out, const int32_t* tokens,
                       const bf16* table, int N, int d, int v0, int Vl);
void embedding_backward(const Device& dev, float* dtable, const float* dout,
                        const int32_t* tokens, int N, int d, int vocab, int v0, int Vl);

// ---- RMSNorm: out = g * x * rstd, rstd = 1/sqrt(mean(x^2)+eps) ----------
void rmsnorm_forward(const Device& dev, float* out, float* rstd, const float* x,
                     const float* g, int N, int d, float eps);
// dx overwritten; dg accumulated. Unless xdot is null, xdot[N] = dx · x per
// row (row::dot): an AttnRes site's sdot = dh · h, computed while both rows
// are in cache instead of read again by the site's backward.
void rmsnorm_backward(const Device& dev, float* dx, float* dg, const float* dout,
                      const float* x, const float* g, const float* rstd, int N,
                      int d, float* xdot = nullptr);
// rstd[N] only (key-side norms of depth-attention sources, computed once per source).
void rms_inverse(const Device& dev, float* rstd, const float* x, int N, int d, float eps);
// out = a + b and rstd = rms_inverse(out) in one pass over the rows: a
// block's running sum and its key-side norm, the same floats as add then
// rms_inverse. out may be a (in place). With `round`, out is rounded to bf16
// values before its rstd is taken.
void add_rms_inverse(const Device& dev, float* out, float* rstd, const float* a, const float* b, int N, int d,
                     float eps, bool round = false);

// ---- RoPE (rotate-half, DESIGN §1) on x[B*T, H, hd], in place ------------
// cos/sin tables are [T, hd/2] in device memory. rope_tables() is a HOST
// function: it fills host arrays, which the caller copies to the device.
void rope_tables(float* cos_t, float* sin_t, int T, int hd, float theta);
void rope_forward(const Device& dev, float* x, const float* cos_t,
                  const float* sin_t, int B, int T, int H, int hd);
void rope_backward(const Device& dev, float* dx, const float* cos_t,
                   const float* sin_t, int B, int T, int H, int hd);

// ---- causal self-attention -----------------------------------------------
// q,k,v,out are [B*T, H*hd] (heads interleaved per row, as Linear outputs).
// att saves the softmax probabilities [B, H, T, T] for backward (upper
// triangle unused). scale = 1/sqrt(hd).
void attention_forward(const Device& dev, float* out, float* att, const float* q,
                       const float* k, const float* v, int B, int T, int H, int hd);
// dq, dk, dv overwritten. scratch must hold B*H*T*T floats.
void attention_backward(const Device& dev, float* dq, float* dk, float* dv,
                        float* scratch, const float* dout, const float* att,
                        const float* q, const float* k, const float* v, int B,
                        int T, int H, int hd);

// Flash attention (model.attention: flash): the same attention in O(T)
// memory per head. The forward keeps lse [B, H, T] (each query row's
// log-sum-exp of its scaled scores) instead of the probabilities; the
// backward recomputes them from it, with delta [B, H, T] as scratch.
// hd <= kMaxHeadDim (kernels/limits.h). Single-source: both backends run
// grid_ops.h's bodies.
void flash_attention_forward(const Device& dev, float* out, float* lse, const float* q, const float* k,
                             const float* v, int B, int T, int H, int hd);
void flash_attention_backward(const Device& dev, float* dq, float* dk, float* dv, float* delta, const float* dout,
                              const float* lse, const float* q, const float* k, const float* v, int B, int T, int H,
                              int hd);

// Decoding: the one new query row q [H*hd] (RoPE applied) against the cache of
// T positions, kcache and vcache [T, H*hd] (the new position's k and v already
// appended). out [H*hd]; scores needs H*T floats.
void attention_decode(const Device& dev, float* out, float* scores, const float* q, const float* kcache,
                      const float* vcache, int T, int H, int hd);

// ---- SwiGLU: out = silu(gate) * up, elementwise over n -------------------
void swiglu_forward(const Device& dev, float* out, const float* gate,
                    const float* up, size_t n);
void swiglu_backward(const Device& dev, float* dgate, float* dup,
                     const float* dout, const float* gate, const float* up,
                     size_t n);

// ---- AttnRes depth attention (DESIGN §1.1), in the paper's two phases ----
// Site j's sources v_s, each [N, d], with src_rstd[s] their rms_inverse rows
// (the key-side RMSNorm without gain). Per token, with u_j = w_j ⊙ g_j:
//   z_s = (u_j · v_s) * rstd_s;  alpha = softmax(z);  h_j = Σ alpha_s v_s.
// Sites of one block share its completed sources (b_0 and the finished
// blocks); all but a block's first also see the partial block sum. Phase 1
// computes a group of S <= kMaxSites sites against the K <= kMaxSources
// completed sources in one pass over each source; phase 2 merges a site's
// partial sum in by online softmax. Per site the backward needs only h_j,
// lse_j [N] (log Σ_s exp z_s) and the K products u_j · v_s of each token,
// from which alpha is recomputed.
//
// src, src_rstd, dacc_src and the per-site lists (h, lse, w, g, dh, sdot,
// dw, dg) are HOST arrays of pointers to device memory: kernels carry them
// by value (on CUDA in the launch's arguments), so no device array has to
// follow each microbatch's sources.

// Phase 1: h[j] = the softmax-weighted sum of the completed sources and
// lse[j] their log-sum-exp, for the S sites with queries w[j], gains g[j];
// unless uv is null, uv[j] [N, K] gets site j's u_j · v_s, which the
// backward reads instead of computing them again.
void attnres_block_forward(const Device& dev, float* const* h, float* const* lse, float* const* uv,
                           const float* const* src, const float* const* src_rstd, int K, const float* const* w,
                           const float* const* g, int S, int N, int d);
// Phase 2: site (h, lse) joins its partial block sum p (rms_inverse p_rstd),
// in place. Unless xn is null, also the RMSNorm that reads h next (gain
// norm): xn and rstd as rmsnorm_forward gives them, while the row is in cache.
void attnres_merge_partial(const Device& dev, float* h, float* lse, const float* p, const float* p_rstd,
                           const float* w, const float* g, int N, int d, float* xn = nullptr,
                           float* rstd = nullptr, const float* norm = nullptr, float eps = 0.0f);

// With round (a bf16 run, whose stream gradients hold bf16 values), both
// backwards round each source gradient to bf16 after each site's term, so a
// pipeline boundary between two sites sees the value one process has there.
//
// Backward, the site's partial source p, run when dh (dL/dh) and sdot[N] =
// dh · h (rmsnorm_backward's xdot) are known: dacc_p += dL/dp (dacc_p =
// dL/dp with assign: the first gradient that buffer gets, so what it held
// is not read) and its query gradients accumulate into dw, dg. A site
// without a partial source (a block's first) has no such part.
// scratch: attnres_partial_backward_scratch(N, d) floats.
void attnres_partial_backward(const Device& dev, float* dacc_p, float* dw, float* dg, float* scratch, const float* dh,
                              const float* sdot, const float* lse, const float* p, const float* p_rstd, const float* w,
                              const float* g, int N, int d, bool assign, bool round = false);
size_t attnres_partial_backward_scratch(int N, int d);
// Backward, the block's part, once the S sites' dh and sdot are known (uv:
// the forward's):
// dacc_src[s] += dL/dv_s for the completed sources s0 <= s < K of the lists
// (value and key path), adding the sites' terms in reverse site order
// (written from 0 with assign), and dw[j], dg[j] accumulate. Site j's uv
// rows hold uv_k[j] products (its completed sources; all K if uv_k is null).
// scratch: attnres_block_backward_scratch(N, S, d) floats.
void attnres_block_backward(const Device& dev, float* const* dacc_src, float* const* dw, float* const* dg,
                            float* scratch, const float* const* dh, const float* const* sdot, const float* const* lse,
                            const float* const* uv, const float* const* src, const float* const* src_rstd, int K,
                            const float* const* w, const float* const* g, int S, int N, int d, bool assign, int s0 = 0,
                            const int* uv_k = nullptr, bool round = false);
size_t attnres_block_backward_scratch(int N, int S, int d);

// ---- id checks (host) ---------------------------------------------------------
// Throw naming the row if a HOST id is outside the vocabulary (bad input from
// a data file): tokens outside [0, vocab), targets outside [-1, V). The CPU
// ops check their ids so; device ids are checked before their copy
// (runtime/device_batch.h), since a device kernel cannot throw.
void check_tokens(const int32_t* tokens, int N, int vocab);
void check_targets(const int32_t* targets, int N, int V);

// ---- softmax cross-entropy, vocabulary-parallel (DESIGN §6) ------------------
// logits [N, Vl] hold the vocabulary ids [v0, v0 + Vl) of V (tp = 1: v0 = 0,
// Vl = V). Tensor-parallel ranks combine the row statistics: row_max by max,
// then sum_exp and target_logit by sum; the full logits are never gathered.
// A target of -1 masks its row (loss 0, no gradient); any other id outside
// [0, V) is bad input and throws.
void cross_entropy_row_max(const Device& dev, float* row_max, const float* logits, int N, int Vl);
// sum_exp[n] = Σ_i exp(logits[n,i] - row_max[n]); target_logit[n] = the
// target's logit if this shard holds it, else 0.
void cross_entropy_row_sums(const Device& dev, float* sum_exp, float* target_logit,
                            const float* logits, const int32_t* targets, const float* row_max,
                            int N, int Vl, int v0, int V);
// losses[N] = log(sum_exp) + row_max - target_logit. sum() adds them.
void cross_entropy_loss(const Device& dev, float* losses, const float* row_max, const float* sum_exp,
                        const float* target_logit, const int32_t* targets, int N);
// dlogits[N, Vl] = (softmax(logits) - onehot(target)) * scale (overwrite),
// from the combined row statistics.
void cross_entropy_backward(const Device& dev, float* dlogits, const float* logits,
                            const int32_t* targets, const float* row_max, const float* sum_exp,
                            int N, int Vl, int v0, float scale);

// *acc += Σ x[i], the sum in float64 added in index order i = 0 .. n-1
// (losses are summed so; every backend must keep that order for
// bitwise-equal runs). acc is device memory: the host reads a step's sums
// at once, not one at a time (docs/CUDA.md).
void sum(const Device& dev, double* acc, const float* x, size_t n);

// ---- optimizer -------------------------------------------------------------
// AdamW with decoupled weight decay on n contiguous floats; step t >= 1.
void adamw_update(const Device& dev, float* param, const float* grad, float* m,
                  float* v, size_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int t);
// *out = Σ x[i]² in float64 over fixed-size groups, whose partials go to
// `partial` (sum_squares_scratch(n) doubles) and are added in group order.
// out and partial are device memory, read by the host as sum() says.
void sum_squares(const Device& dev, double* out, double* partial, const float* x, size_t n);
size_t sum_squares_scratch(size_t n);
void scale_inplace(const Device& dev, float* x, float s, size_t n);

}  // namespace attnres::kernels
