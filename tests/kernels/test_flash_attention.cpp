// Flash attention (kernels/grid_ops.h, the bodies the CUDA backend runs)
// against the materialized attention the CPU trains with: the same outputs
// and gradients within 1e-5, its log-sum-exp equal to the materialized
// softmax's, and memory that is O(T) per head.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/ops.h"
#include "tests/random_floats.h"

using namespace attnres::kernels;

namespace {

// |got − want| <= 1e-5 · max |want| over the tensor.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  float scale = 0.0f;
  for (float w : want) scale = std::max(scale, std::fabs(w));
  for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-5f * scale) << what << "[" << i << "]";
}

struct Shape {
  int B, T, H, hd;
};

}  // namespace

TEST(FlashAttention, EqualsTheMaterializedAttention) {
  // T = 1, a tile's worth, across tile edges; hd below, at and above the dot's lanes.
  for (const Shape s : {Shape{1, 1, 1, 4}, Shape{2, 32, 2, 8}, Shape{2, 70, 3, 16}, Shape{1, 130, 2, 13}}) {
    const size_t n = size_t(s.B) * s.T * s.H * s.hd, rows = size_t(s.B) * s.H * s.T, tt = rows * s.T;
    // Scores of a few units, as trained models have: exp() spreads them.
    std::vector<float> q = random_floats(n, 1), k = random_floats(n, 2);
    for (float& x : q) x *= 3.0f;
    const std::vector<float> v = random_floats(n, 3), dout = random_floats(n, 4);
    std::vector<float> out_a(n), out_b(n), att(tt), lse(rows);
    attention_forward(Device{}, out_a.data(), att.data(), q.data(), k.data(), v.data(), s.B, s.T, s.H, s.hd);
    flash_attention_forward(Device{}, out_b.data(), lse.data(), q.data(), k.data(), v.data(), s.B, s.T, s.H, s.hd);
    expect_close(out_b, out_a, "output");
    // p_ij = exp(s_ij − lse_i): the diagonal probability from lse and the scores.
    const int C = s.H * s.hd;
    for (size_t r = 0; r < rows; ++r) {
      const size_t i = r % size_t(s.T), bh = r / size_t(s.T), b = bh / size_t(s.H), h = bh % size_t(s.H);
      const float* qi = q.data() + (b * s.T + i) * C + h * s.hd;
      const float* ki = k.data() + (b * s.T + i) * C + h * s.hd;
      float dot = 0.0f;
      for (int e = 0; e < s.hd; ++e) dot += qi[e] * ki[e];
      const float p = std::exp(dot / std::sqrt(float(s.hd)) - lse[r]);
      ASSERT_NEAR(p, att[r * size_t(s.T) + i], 1e-5f) << "row " << r;
    }

    std::vector<float> dq_a(n), dk_a(n), dv_a(n), dq_b(n), dk_b(n), dv_b(n), scratch(tt), delta(rows);
    attention_backward(Device{}, dq_a.data(), dk_a.data(), dv_a.data(), scratch.data(), dout.data(), att.data(),
                       q.data(), k.data(), v.data(), s.B, s.T, s.H, s.hd);
    flash_attention_backward(Device{}, dq_b.data(), dk_b.data(), dv_b.data(), delta.data(), dout.data(), lse.data(),
                             q.data(), k.data(), v.data(), s.B, s.T, s.H, s.hd);
    expect_close(dq_b, dq_a, "dq");
    expect_close(dk_b, dk_a, "dk");
    expect_close(dv_b, dv_a, "dv");
  }
}

// Row i reads keys 0..i only: changing the last key and value changes no
// output but the last row's, and no lse but its.
TEST(FlashAttention, IsCausal) {
  const int B = 1, T = 40, H = 2, hd = 8, C = H * hd;
  const size_t n = size_t(B) * T * C;
  const std::vector<float> q = random_floats(n, 5), v0 = random_floats(n, 7);
  std::vector<float> k = random_floats(n, 6), v = v0;
  std::vector<float> out_a(n), out_b(n), lse_a(size_t(B) * H * T), lse_b(lse_a.size());
  flash_attention_forward(Device{}, out_a.data(), lse_a.data(), q.data(), k.data(), v.data(), B, T, H, hd);
  for (int e = 0; e < C; ++e) k[size_t(T - 1) * C + e] += 1.0f, v[size_t(T - 1) * C + e] -= 1.0f;
  flash_attention_forward(Device{}, out_b.data(), lse_b.data(), q.data(), k.data(), v.data(), B, T, H, hd);
  for (size_t i = 0; i < size_t(T - 1) * C; ++i) ASSERT_EQ(out_a[i], out_b[i]) << i;
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < T - 1; ++i) ASSERT_EQ(lse_a[size_t(h) * T + i], lse_b[size_t(h) * T + i]);
  EXPECT_NE(out_a[n - 1], out_b[n - 1]);
}
