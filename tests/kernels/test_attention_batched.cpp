// The CUDA backend's attention (kernels/grid_ops.h: strided-batched GEMMs
// over the heads around the causal score rows) run on the CPU, with the
// CPU's GEMM and runner, against the CPU's own attention (causal sgemm
// tiles, and sgemv for decoding): forward outputs and probabilities,
// backward gradients, and a decoding step, within float rounding. This is
// the indexing, strides and masking a GPU would run.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/grid_cpu.h"
#include "kernels/grid_ops.h"
#include "kernels/ops.h"
#include "tests/random_floats.h"

using namespace attnres::kernels;

namespace {

struct CpuBatchedGemm {
  void operator()(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, int64_t sa,
                  const float* B, int ldb, int64_t sb, float beta, float* C, int ldc, int64_t sc, int batch) const {
    gemm_strided_batched(Device{}, ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
  }
};

void expect_close(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_NEAR(got[i], want[i], 2e-5f * (1.0f + std::fabs(want[i]))) << what << "[" << i << "]";
}

}  // namespace

TEST(AttentionBatched, ForwardAndBackwardEqualTheCpuTiles) {
  const int B = 2, T = 70, H = 3, hd = 8;  // T > 64: more than one CPU tile
  const size_t n = size_t(B) * T * H * hd, tt = size_t(B) * H * T * T;
  const std::vector<float> q = random_floats(n, 1), k = random_floats(n, 2), v = random_floats(n, 3),
                           dout = random_floats(n, 4);
  std::vector<float> out_a(n), out_b(n), att_a(tt), att_b(tt);
  attention_forward(Device{}, out_a.data(), att_a.data(), q.data(), k.data(), v.data(), B, T, H, hd);
  grid::attention_forward_batched(cpu::Grid{}, CpuBatchedGemm{}, out_b.data(), att_b.data(), q.data(), k.data(),
                                  v.data(), B, T, H, hd);
  expect_close(att_b, att_a, "probabilities");
  expect_close(out_b, out_a, "output");

  std::vector<float> dq_a(n), dk_a(n), dv_a(n), dq_b(n), dk_b(n), dv_b(n), scratch(tt);
  attention_backward(Device{}, dq_a.data(), dk_a.data(), dv_a.data(), scratch.data(), dout.data(), att_a.data(),
                     q.data(), k.data(), v.data(), B, T, H, hd);
  grid::attention_backward_batched(cpu::Grid{}, CpuBatchedGemm{}, dq_b.data(), dk_b.data(), dv_b.data(),
                                   scratch.data(), dout.data(), att_a.data(), q.data(), k.data(), v.data(), B, T, H,
                                   hd);
  expect_close(dq_b, dq_a, "dq");
  expect_close(dk_b, dk_a, "dk");
  expect_close(dv_b, dv_a, "dv");
}

TEST(AttentionBatched, DecodeEqualsTheCpuDecode) {
  const int T = 9, H = 4, hd = 6, C = H * hd;
  const std::vector<float> q = random_floats(size_t(C), 5), kc = random_floats(size_t(T) * C, 6),
                           vc = random_floats(size_t(T) * C, 7);
  const size_t width = size_t(C);
  std::vector<float> out_a(width), out_b(width), scores(size_t(H) * T);
  attention_decode(Device{}, out_a.data(), scores.data(), q.data(), kc.data(), vc.data(), T, H, hd);
  grid::attention_decode_batched(cpu::Grid{}, CpuBatchedGemm{}, out_b.data(), scores.data(), q.data(), kc.data(),
                                 vc.data(), T, H, hd);
  expect_close(out_b, out_a, "decode output");
}
