// Causal self-attention. One (batch, head) pair per OpenMP task; inside it,
// query rows are processed in tiles of kTile with single-threaded sgemm calls
// that stop at the tile's last key (the causal bound), so only the diagonal
// tile computes masked entries. OpenBLAS is held at one thread for the
// duration of the parallel region: the parallelism is over (batch, head).
#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "kernels/cpu/ops_cpu.h"
#include "kernels/cpu/parallel_cpu.h"
#include "kernels/rowops.h"

namespace attnres::kernels::cpu {

namespace {

constexpr int kTile = 64;

// sgemm on row-major operands, always called from inside the parallel region.
void sgemm1(bool ta, bool tb, int M, int N, int K, float alpha, const float* A,
            int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
              tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta,
              C, ldc);
}

// Runs body(b, h) for every (batch, head) pair with OpenBLAS on one thread.
template <class Body>
void for_each_head(int B, int H, Body body) {
  cpu::blas_tasks(B * H, [&](int bh) { body(bh / H, bh % H); });
}

}  // namespace

void attention_forward(const Device&, float* out, float* att, const float* q,
                       const float* k, const float* v, int B, int T, int H, int hd) {
  const int C = H * hd;
  const float scale = 1.0f / std::sqrt((float)hd);
  for_each_head(B, H, [&](int b, int h) {
    const size_t base = (size_t)b * T * C + (size_t)h * hd;
    float* A = att + ((size_t)b * H + h) * T * T;
    for (int r0 = 0; r0 < T; r0 += kTile) {
      const int rows = std::min(kTile, T - r0), cols = r0 + rows;
      float* S = A + (size_t)r0 * T;
      sgemm1(false, true, rows, cols, hd, scale, q + base + (size_t)r0 * C, C,
             k + base, C, 0.0f, S, T);
      for (int i = 0; i < rows; i++) row::causal_softmax(S + (size_t)i * T, r0 + i + 1, T);
      sgemm1(false, false, rows, hd, cols, 1.0f, S, T, v + base, C, 0.0f,
             out + base + (size_t)r0 * C, C);
    }
  });
}

// With P = att, dP = dO V^T, dS = P ⊙ (dP - rowsum(P ⊙ dP)) * scale:
// dq = dS K, dk = dS^T Q, dv = P^T dO. Tiles run last-to-first so the first
// one, which spans every key, overwrites dk and dv; the others accumulate.
void attention_backward(const Device&, float* dq, float* dk, float* dv,
                        float* scratch, const float* dout, const float* att,
                        const float* q, const float* k, const float* v, int B,
                        int T, int H, int hd) {
  const int C = H * hd;
  const float scale = 1.0f / std::sqrt((float)hd);
  const int ntiles = (T + kTile - 1) / kTile;
  for_each_head(B, H, [&](int b, int h) {
    const size_t base = (size_t)b * T * C + (size_t)h * hd;
    const float* P = att + ((size_t)b * H + h) * T * T;
    float* dS = scratch + ((size_t)b * H + h) * T * T;
    for (int tile = ntiles - 1; tile >= 0; tile--) {
      const int r0 = tile * kTile;
      const int rows = std::min(kTile, T - r0), cols = r0 + rows;
      const float* Pt = P + (size_t)r0 * T;
      float* S = dS + (size_t)r0 * T;
      const float beta = tile == ntiles - 1 ? 0.0f : 1.0f;
      sgemm1(false, true, rows, cols, hd, 1.0f, dout + base + (size_t)r0 * C, C,
             v + base, C, 0.0f, S, T);
      for (int i = 0; i < rows; i++)
        row::causal_softmax_backward(S + (size_t)i * T, Pt + (size_t)i * T, r0 + i + 1, cols, scale);
      sgemm1(false, false, rows, hd, cols, 1.0f, S, T, k + base, C, 0.0f,
             dq + base + (size_t)r0 * C, C);
      sgemm1(true, false, cols, hd, rows, 1.0f, S, T, q + base + (size_t)r0 * C, C,
             beta, dk + base, C);
      sgemm1(true, false, cols, hd, rows, 1.0f, Pt, T, dout + base + (size_t)r0 * C,
             C, beta, dv + base, C);
    }
  });
}

// One query row per head against the cached keys and values of T positions;
// scores are scaled as in attention_forward and softmaxed over all T.
void attention_decode(const Device&, float* out, float* scores, const float* q, const float* kcache,
                      const float* vcache, int T, int H, int hd) {
  const int C = H * hd;
  const float scale = 1.0f / std::sqrt((float)hd);
  for (int h = 0; h < H; h++) {
    float* s = scores + (size_t)h * T;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, T, hd, scale, kcache + (size_t)h * hd, C, q + (size_t)h * hd, 1,
                0.0f, s, 1);
    row::softmax(s, T);
    cblas_sgemv(CblasRowMajor, CblasTrans, T, hd, 1.0f, vcache + (size_t)h * hd, C, s, 1, 0.0f,
                out + (size_t)h * hd, 1);
  }
}

}  // namespace attnres::kernels::cpu
