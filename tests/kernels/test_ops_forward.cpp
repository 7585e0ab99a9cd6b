// Forward values against naive double references, plus the properties the
// rest of the runtime relies on: causality, rotate-half RoPE, AdamW's exact
// update, the accumulate-vs-overwrite conventions and thread-count-independent
// reductions.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <limits>
#include <stdexcept>
#include <vector>

#include "kernels/cpu/gemm_cpu.h"
#include "kernels/ops.h"
#include "kernels/peak.h"
#include "cross_entropy_whole.h"
#include "attnres_group.h"
#include "reference_ops.h"

namespace attnres::kernels {
namespace {

using namespace testing;

constexpr double kTol = 1e-5;

TEST(OpsForward, GemmAllTransposesWithStrides) {
  Device dev;
  const int M = 5, N = 6, K = 7, pad = 3;
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      const int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
      const int lda = ac + pad, ldb = bc + pad, ldc = N + pad;
      Vec A = random_vec(ar * lda, 1), B = random_vec(br * ldb, 2),
          C = random_vec(M * ldc, 3);
      DVec want(C.begin(), C.end());
      for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
          double s = 0.0;
          for (int k = 0; k < K; k++)
            s += (double)(ta ? A[k * lda + m] : A[m * lda + k]) *
                 (tb ? B[n * ldb + k] : B[k * ldb + n]);
          want[m * ldc + n] = 0.5 * s + 2.0 * C[m * ldc + n];
        }
      gemm(dev, ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 2.0f, C.data(), ldc);
      for (int m = 0; m < M; m++)
        for (int n = 0; n < ldc; n++)  // padding columns must be untouched
          ASSERT_NEAR(C[m * ldc + n], want[m * ldc + n], 1e-5) << ta << tb << m << n;
    }
}

// bf16 operands are exact in float, so the reference is the double product of
// the bf16 values; fp32 accumulation of K = 300 terms stays within 1e-5.
static std::vector<bf16> to_bf16_vec(const Vec& x) {
  std::vector<bf16> out(x.size());
  for (size_t i = 0; i < x.size(); i++) out[i] = to_bf16(x[i]);
  return out;
}

TEST(OpsForward, GemmBf16AllTransposesWithStrides) {
  Device dev;
  const int M = 130, N = 70, K = 300, pad = 3;  // M crosses a slice; N < M, then M < N below
  for (int wide = 0; wide < 2; wide++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        const int m = wide ? N : M, n = wide ? M : N;
        const int ar = ta ? K : m, ac = ta ? m : K, br = tb ? n : K, bc = tb ? K : n;
        const int lda = ac + pad, ldb = bc + pad, ldc = n + pad;
        const std::vector<bf16> A = to_bf16_vec(random_vec(ar * lda, 1)), B = to_bf16_vec(random_vec(br * ldb, 2));
        Vec C = random_vec(m * ldc, 3);
        DVec want(C.begin(), C.end());
        for (int i = 0; i < m; i++)
          for (int j = 0; j < n; j++) {
            double s = 0.0;
            for (int k = 0; k < K; k++)
              s += double(to_float(ta ? A[k * lda + i] : A[i * lda + k])) *
                   to_float(tb ? B[j * ldb + k] : B[k * ldb + j]);
            want[i * ldc + j] = 0.5 * s + 2.0 * C[i * ldc + j];
          }
        gemm(dev, ta, tb, m, n, K, 0.5f, A.data(), lda, B.data(), ldb, 2.0f, C.data(), ldc);
        for (int i = 0; i < m; i++)
          for (int j = 0; j < ldc; j++)  // padding columns must be untouched
            ASSERT_NEAR(C[i * ldc + j], want[i * ldc + j], 1e-5 * (1.0 + std::abs(want[i * ldc + j])))
                << wide << ta << tb << i << j;
      }
}

// CTest runs the bf16 tests again with oneDNN held to AVX2, which has no
// bf16 matmul: the widened fallback must then be the engine, and as exact.
// oneDNN's fp32 matmul exists at every ISA.
TEST(OpsForward, Bf16GemmEngineFollowsTheIsa) {
  EXPECT_NE(cpu::onednn_gemm_engine(DType::F32).find("oneDNN"), std::string::npos);
  const char* isa = std::getenv("DNNL_MAX_CPU_ISA");
  const std::string engine = cpu::onednn_gemm_engine(DType::BF16);
  if (isa && std::string(isa) == "AVX2")
    EXPECT_NE(engine.find("widened"), std::string::npos) << engine;
  else
    EXPECT_NE(engine.find("oneDNN"), std::string::npos) << engine;
}

TEST(OpsForward, Bf16RoundsToNearestEven) {
  EXPECT_EQ(to_bf16(1.0f).bits, 0x3f80);
  EXPECT_EQ(to_bf16(-2.0f).bits, 0xc000);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
  EXPECT_EQ(to_bf16(1.0f + 0x1p-8f).bits, 0x3f80);
  // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up to even.
  EXPECT_EQ(to_bf16(1.0f + 3 * 0x1p-8f).bits, 0x3f82);
  EXPECT_EQ(to_bf16(1.0f + 0x1p-8f + 0x1p-20f).bits, 0x3f81);  // above halfway: up
  EXPECT_EQ(to_bf16(std::numeric_limits<float>::infinity()).bits, 0x7f80);
  EXPECT_TRUE(std::isnan(to_float(to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isinf(to_float(to_bf16(std::numeric_limits<float>::max()))));  // rounds past the largest bf16
  // convert() on a device is the same rounding, and back to float is exact.
  Device dev;
  const Vec x = random_vec(1000, 4, -1e3f, 1e3f);
  std::vector<bf16> h(x.size());
  Vec back(x.size());
  convert(dev, h.data(), x.data(), x.size());
  convert(dev, back.data(), h.data(), h.size());
  for (size_t i = 0; i < x.size(); i++) {
    ASSERT_EQ(h[i].bits, to_bf16(x[i]).bits) << i;
    ASSERT_EQ(back[i], round_bf16(x[i])) << i;
    ASSERT_LE(std::abs(back[i] - x[i]), std::abs(x[i]) * 0x1p-8f) << i;  // half a unit in the last place
  }
}

// A bf16 run's stream sums: each rounded as to_bf16 rounds it, and the
// block sum's rstd taken from the rounded row (so it equals rms_inverse of
// what is stored).
TEST(OpsForward, RoundedStreamSums) {
  Device dev;
  const int N = 7, d = 33;
  const Vec a = random_vec(N * d, 5), b = random_vec(N * d, 6);
  Vec sum(N * d), acc = a, blk(N * d), rstd(N), want_rstd(N), r = a;
  add(dev, sum.data(), a.data(), b.data(), sum.size(), true);
  add_inplace(dev, acc.data(), b.data(), acc.size(), true);
  add_rms_inverse(dev, blk.data(), rstd.data(), a.data(), b.data(), N, d, 1e-6f, true);
  round_bf16_inplace(dev, r.data(), r.size());
  for (size_t i = 0; i < sum.size(); i++) {
    ASSERT_EQ(sum[i], round_bf16(a[i] + b[i])) << i;
    ASSERT_EQ(acc[i], sum[i]) << i;
    ASSERT_EQ(blk[i], sum[i]) << i;
    ASSERT_EQ(r[i], round_bf16(a[i])) << i;
  }
  rms_inverse(dev, want_rstd.data(), sum.data(), N, d, 1e-6f);
  EXPECT_EQ(rstd, want_rstd);
}

TEST(OpsForward, Linear) {
  Device dev;
  const int N = 6, in = 9, out = 5;
  Vec x = random_vec(N * in, 4), W = random_vec(out * in, 5), y(N * out, 7.0f);
  linear_forward(dev, y.data(), x.data(), W.data(), N, in, out);
  expect_near_rel(y, ref_linear(to_double(x), to_double(W), N, in, out), kTol, "linear");
}

TEST(OpsForward, LinearBackwardConventions) {
  Device dev;
  const int N = 4, in = 3, out = 2;
  Vec x = random_vec(N * in, 6), W = random_vec(out * in, 7), dy = random_vec(N * out, 8);
  Vec dx_over(N * in, 9.0f), dx_acc(N * in, 9.0f), dW(out * in, 1.0f);
  linear_backward(dev, dx_over.data(), nullptr, dy.data(), x.data(), W.data(), N, in, out, false);
  linear_backward(dev, dx_acc.data(), dW.data(), dy.data(), x.data(), W.data(), N, in, out, true);
  for (int n = 0; n < N; n++)
    for (int i = 0; i < in; i++) {
      double s = 0.0;
      for (int o = 0; o < out; o++) s += (double)dy[n * out + o] * W[o * in + i];
      EXPECT_NEAR(dx_over[n * in + i], s, kTol);
      EXPECT_NEAR(dx_acc[n * in + i], 9.0 + s, kTol);
    }
  for (int o = 0; o < out; o++)
    for (int i = 0; i < in; i++) {
      double s = 0.0;
      for (int n = 0; n < N; n++) s += (double)dy[n * out + o] * x[n * in + i];
      EXPECT_NEAR(dW[o * in + i], 1.0 + s, kTol);
    }
}

TEST(OpsForward, ElementwiseAndEmbedding) {
  Device dev;
  Vec a = random_vec(33, 9), b = random_vec(33, 10), out(33);
  add(dev, out.data(), a.data(), b.data(), a.size());
  Vec y = a;
  add_inplace(dev, y.data(), b.data(), a.size());
  Vec s = a;
  scale_inplace(dev, s.data(), -3.0f, s.size());
  for (size_t i = 0; i < a.size(); i++) {
    EXPECT_EQ(out[i], a[i] + b[i]);
    EXPECT_EQ(y[i], a[i] + b[i]);
    EXPECT_EQ(s[i], a[i] * -3.0f);
  }
  const int d = 4;
  std::vector<int32_t> tok = {2, 0, 2};
  Vec table = random_vec(3 * d, 11), e(3 * d);
  embedding_forward(dev, e.data(), tok.data(), table.data(), 3, d, 0, 3);
  for (int n = 0; n < 3; n++)
    for (int i = 0; i < d; i++) EXPECT_EQ(e[n * d + i], table[tok[n] * d + i]);
}

TEST(OpsForward, BadTokenIdsThrow) {
  Device dev;
  std::vector<int32_t> tok = {1, 5};
  Vec dout(2 * 3), dtable(4 * 3), logits(2 * 4), losses(2);
  EXPECT_THROW(embedding_backward(dev, dtable.data(), dout.data(), tok.data(), 2, 3, 4, 0, 4),
               std::runtime_error);
  EXPECT_THROW(ce_forward_whole(dev, losses.data(), logits.data(), tok.data(), 2, 4), std::runtime_error);
  tok = {1, -2};  // -1 masks a row; other negatives are bad input
  EXPECT_THROW(ce_forward_whole(dev, losses.data(), logits.data(), tok.data(), 2, 4), std::runtime_error);
}

TEST(OpsForward, RMSNorm) {
  Device dev;
  const int N = 5, d = 12;
  const float eps = 1e-6f;
  Vec x = random_vec(N * d, 13, -3.0f, 3.0f), g = random_vec(d, 14), out(N * d),
      rstd(N), rstd2(N);
  rmsnorm_forward(dev, out.data(), rstd.data(), x.data(), g.data(), N, d, eps);
  rms_inverse(dev, rstd2.data(), x.data(), N, d, eps);
  expect_near_rel(out, ref_rmsnorm(to_double(x), to_double(g), N, d, eps), kTol, "rmsnorm");
  for (int n = 0; n < N; n++) {
    double ms = 0.0;
    for (int i = 0; i < d; i++) ms += (double)x[n * d + i] * x[n * d + i];
    EXPECT_NEAR(rstd[n], 1.0 / std::sqrt(ms / d + eps), 1e-5 * rstd[n]);
    EXPECT_EQ(rstd[n], rstd2[n]);
  }
  // add_rms_inverse: the same floats as add, then rms_inverse.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Vec y = random_vec(N * d, 15, -3.0f, 3.0f), sum(N * d), fused(N * d, nan), rstd3(N), rstd4(N, nan);
  add(dev, sum.data(), x.data(), y.data(), size_t(N) * d);
  rms_inverse(dev, rstd3.data(), sum.data(), N, d, eps);
  add_rms_inverse(dev, fused.data(), rstd4.data(), x.data(), y.data(), N, d, eps);
  EXPECT_EQ(fused, sum);
  EXPECT_EQ(rstd4, rstd3);
}

TEST(OpsForward, RopeRotateHalf) {
  Device dev;
  const int B = 2, T = 37, H = 3, hd = 8;
  const float theta = 10000.0f;
  Vec cs(T * hd / 2), sn(T * hd / 2);
  rope_tables(cs.data(), sn.data(), T, hd, theta);
  Vec x = random_vec(B * T * H * hd, 15), y = x;
  rope_forward(dev, y.data(), cs.data(), sn.data(), B, T, H, hd);
  expect_near_rel(y, ref_rope(to_double(x), B, T, H, hd, theta), 1e-5, "rope");
  // Position 0 is the identity; backward is the inverse rotation.
  for (int i = 0; i < H * hd; i++) EXPECT_EQ(y[i], x[i]);
  rope_backward(dev, y.data(), cs.data(), sn.data(), B, T, H, hd);
  expect_near_rel(y, to_double(x), 1e-5, "rope inverse");
}

TEST(OpsForward, AttentionMatchesReferenceAndIsCausal) {
  Device dev;
  const int B = 2, T = 150, H = 3, hd = 8, C = H * hd;  // several query tiles
  const size_t n = (size_t)B * T * C;
  Vec q = random_vec(n, 16, -2.0f, 2.0f), k = random_vec(n, 17, -2.0f, 2.0f),
      v = random_vec(n, 18);
  Vec out(n), att((size_t)B * H * T * T, 5.0f);
  attention_forward(dev, out.data(), att.data(), q.data(), k.data(), v.data(), B, T, H, hd);
  expect_near_rel(out, ref_attention(to_double(q), to_double(k), to_double(v), B, T, H, hd),
                  kTol, "attention");
  for (int bh = 0; bh < B * H; bh++)
    for (int t = 0; t < T; t++) {
      double s = 0.0;
      for (int j = 0; j < T; j++) s += att[((size_t)bh * T + t) * T + j];
      EXPECT_NEAR(s, 1.0, 1e-5);
    }
  // Changing q, k, v at positions > t must leave outputs at <= t bit-identical.
  const int t = 70;
  Vec q2 = q, k2 = k, v2 = v, out2(n), att2(att.size());
  for (int b = 0; b < B; b++)
    for (size_t i = (size_t)(b * T + t + 1) * C; i < (size_t)(b + 1) * T * C; i++) {
      q2[i] += 1.0f;
      k2[i] -= 2.0f;
      v2[i] *= 3.0f;
    }
  attention_forward(dev, out2.data(), att2.data(), q2.data(), k2.data(), v2.data(), B, T, H, hd);
  for (int b = 0; b < B; b++) {
    const size_t lo = (size_t)b * T * C;
    EXPECT_EQ(std::memcmp(&out[lo], &out2[lo], (t + 1) * C * sizeof(float)), 0);
    EXPECT_NE(std::memcmp(&out[lo + (t + 1) * C], &out2[lo + (t + 1) * C], C * sizeof(float)), 0);
  }
}

TEST(OpsForward, SwiGLU) {
  Device dev;
  Vec gate = random_vec(50, 19, -4.0f, 4.0f), up = random_vec(50, 20), out(50);
  swiglu_forward(dev, out.data(), gate.data(), up.data(), 50);
  expect_near_rel(out, ref_swiglu(to_double(gate), to_double(up)), kTol, "swiglu");
}

// Two phases against the one-pass double reference: h_j and lse_j of every
// site of a group, its first site without a partial (a block's start).
TEST(OpsForward, AttnResTwoPhases) {
  Device dev;
  const int K = 4, S = 3, N = 6, d = 16;
  SiteGroup G = make_site_group(K, S, N, d, false, 30);
  std::vector<Vec> h, lse, uv;
  group_forward(dev, G, h, lse, uv);
  for (int j = 0; j < S; j++) {
    const std::vector<DVec> srcs = site_sources(G, j);
    const DVec w = to_double(G.w[j]), g = to_double(G.g[j]);
    expect_near_rel(h[j], ref_attnres(srcs, w, g, N, d, 1e-6), kTol, "attnres h");
    DVec want_lse(static_cast<size_t>(N)), want_uv(size_t(N) * K);  // uv: the completed sources' only
    for (int n = 0; n < N; n++) {
      double sum = 0;
      for (size_t s = 0; s < srcs.size(); s++) {
        const DVec& v = srcs[s];
        double ms = 0, dot = 0;
        for (int i = 0; i < d; i++) ms += v[n * d + i] * v[n * d + i], dot += w[i] * g[i] * v[n * d + i];
        sum += std::exp(dot / std::sqrt(ms / d + 1e-6));
        if (s < size_t(K)) want_uv[size_t(n) * K + s] = dot;
      }
      want_lse[size_t(n)] = std::log(sum);
    }
    expect_near_rel(lse[j], want_lse, kTol, "attnres lse");
    expect_near_rel(uv[j], want_uv, kTol, "attnres u . v");
  }
  // Zero queries (the paper's init) average each site's sources uniformly.
  for (Vec& w : G.w) std::fill(w.begin(), w.end(), 0.0f);
  group_forward(dev, G, h, lse, uv);
  for (int j = 0; j < S; j++) {
    const std::vector<DVec> srcs = site_sources(G, j);
    for (int i = 0; i < N * d; i++) {
      double mean = 0.0;
      for (const DVec& v : srcs) mean += v[size_t(i)] / double(srcs.size());
      EXPECT_NEAR(h[j][size_t(i)], mean, 1e-5);
    }
  }
}

void check_grouping_changes_no_bit(const Device& dev, const SiteGroup& G) {
  const int K = G.K, S = G.S, N = G.N, d = G.d;
  std::vector<Vec> h, lse, uv, dh;
  group_forward(dev, G, h, lse, uv);
  for (int j = 0; j < S; j++) dh.push_back(random_vec(size_t(N) * d, 90 + j));
  GroupGrads whole = group_grads(G, 0.25f), cut = group_grads(G, 0.25f);
  group_backward(dev, G, h, lse, uv, dh, whole, 0, S);
  for (int j = S - 1; j >= 0; j--) group_backward(dev, G, h, lse, uv, dh, cut, j, j + 1);
  for (int s = 0; s < K; s++) EXPECT_EQ(whole.dsrc[s], cut.dsrc[s]) << "dsrc " << s;
  for (int j = 0; j < S; j++) {
    EXPECT_EQ(whole.dpart[j], cut.dpart[j]) << "dpart " << j;
    EXPECT_EQ(whole.dw[j], cut.dw[j]) << "dw " << j;
    EXPECT_EQ(whole.dg[j], cut.dg[j]) << "dg " << j;
  }
  // Forward: site 1 computed alone gives the same bits as inside the group.
  SiteGroup one = G;
  one.S = 1, one.first_partial = true;
  one.part = {G.part[1]}, one.part_rstd = {G.part_rstd[1]}, one.w = {G.w[1]}, one.g = {G.g[1]};
  std::vector<Vec> h1, lse1, uv1;
  group_forward(dev, one, h1, lse1, uv1);
  EXPECT_EQ(h1[0], h[1]);
  EXPECT_EQ(lse1[0], lse[1]);
  EXPECT_EQ(uv1[0], uv[1]);
}

// How sites are grouped (a whole block, or cut by a pipeline stage boundary
// into groups of one) changes no bit, forward or backward: a site's forward
// arithmetic is its own, and a source's gradient gets the sites' terms in
// reverse site order either way. This is what keeps pipelines bitwise.
// K = 6 runs a tile of 4 sources and one of 2 (kernels/rowops.h), K = 11
// tiles of 4, 4, 3 for the group and of 8 and 3 for a site alone; S = 3 a
// pair of sites and a single one; d = 27 leaves a tail past the lanes.
TEST(OpsForward, AttnResGroupingChangesNoBit) {
  Device dev;
  for (const int K : {3, 6, 11}) {
    SCOPED_TRACE("K = " + std::to_string(K));
    check_grouping_changes_no_bit(dev, make_site_group(K, 3, 70, 27, false, 80));
  }
}

TEST(OpsForward, AttnResMergeWithNormEqualsMergeThenNorm) {
  Device dev;
  const int N = 7, d = 20;
  const float eps = 1e-6f, nan = std::numeric_limits<float>::quiet_NaN();
  const Vec p = random_vec(N * d, 61), p_rstd = random_vec(N, 62, 0.5f, 2.0f), w = random_vec(d, 63),
            g = random_vec(d, 64), norm = random_vec(d, 65, 0.5f, 1.5f);
  Vec h1 = random_vec(N * d, 66), lse1 = random_vec(N, 67), h2 = h1, lse2 = lse1;
  Vec xn1(N * d), rstd1(N), xn2(N * d, nan), rstd2(N, nan);
  attnres_merge_partial(dev, h1.data(), lse1.data(), p.data(), p_rstd.data(), w.data(), g.data(), N, d);
  rmsnorm_forward(dev, xn1.data(), rstd1.data(), h1.data(), norm.data(), N, d, eps);
  attnres_merge_partial(dev, h2.data(), lse2.data(), p.data(), p_rstd.data(), w.data(), g.data(), N, d, xn2.data(),
                        rstd2.data(), norm.data(), eps);
  EXPECT_EQ(h2, h1);
  EXPECT_EQ(lse2, lse1);
  EXPECT_EQ(xn2, xn1);
  EXPECT_EQ(rstd2, rstd1);
}

// A backward span splits a site's completed part into passes over source
// ranges, and reads u · v rows longer than a pass's list (a site of a later
// block): each source still gets the same terms in the same order, so its
// gradient keeps every bit; the query gradients add the passes' partials
// in another order (sums of up to 32 rows x K terms of either sign, here
// 2.5e-5 relative apart at most; a lost or doubled term would be off by
// order 1). Padded rows alone change nothing.
TEST(OpsForward, AttnResSourceRangesAndLongerUvRows) {
  Device dev;
  for (const int K : {5, 11}) {
    SCOPED_TRACE("K = " + std::to_string(K));
    const SiteGroup G = make_site_group(K, 3, 70, 27, true, 90);
    std::vector<Vec> h, lse, uv, dh;
    group_forward(dev, G, h, lse, uv);
    for (int j = 0; j < G.S; j++) dh.push_back(random_vec(size_t(G.N) * G.d, 95 + j));
    GroupGrads whole = group_grads(G, 0.25f), padded = group_grads(G, 0.25f), split = group_grads(G, 0.25f);
    group_backward(dev, G, h, lse, uv, dh, whole, 0, G.S);
    group_backward(dev, G, h, lse, uv, dh, padded, 0, G.S, false, 0, 3);
    group_backward(dev, G, h, lse, uv, dh, split, 0, G.S, false, K - 2, 3);
    for (int s = 0; s < K; s++) {
      EXPECT_EQ(padded.dsrc[s], whole.dsrc[s]) << "dsrc " << s;
      EXPECT_EQ(split.dsrc[s], whole.dsrc[s]) << "dsrc " << s;
    }
    for (int j = 0; j < G.S; j++) {
      EXPECT_EQ(padded.dw[j], whole.dw[j]) << "dw " << j;
      EXPECT_EQ(padded.dg[j], whole.dg[j]) << "dg " << j;
      EXPECT_EQ(split.dpart[j], whole.dpart[j]) << "dpart " << j;
      expect_near_rel(split.dw[j], to_double(whole.dw[j]), 2e-4, "dw of split passes");
      expect_near_rel(split.dg[j], to_double(whole.dg[j]), 2e-4, "dg of split passes");
    }
  }
  // A pass that would read past a site's u · v row is refused, naming it.
  const int K = 4, S = 2, short_rows[S] = {K, K - 1};
  std::vector<float*> none(K, nullptr);
  std::vector<const float*> cnone(K, nullptr);
  try {
    attnres_block_backward(dev, none.data(), none.data(), none.data(), nullptr, cnone.data(), cnone.data(),
                           cnone.data(), cnone.data(), cnone.data(), cnone.data(), K, cnone.data(), cnone.data(), S,
                           8, 16, false, 0, short_rows);
    ADD_FAILURE() << "a u . v row shorter than the pass was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("site 1's u . v rows hold 3 products"), std::string::npos) << e.what();
  }
}

// The output site's backward writes the sources' gradients instead of adding
// to zeros (their buffers are then never zeroed): the same bits, and what the
// buffers held is not read (NaN there would spread).
TEST(OpsForward, AttnResAssignEqualsAddingToZeros) {
  Device dev;
  const SiteGroup G = make_site_group(6, 3, 70, 27, true, 85);
  std::vector<Vec> h, lse, uv, dh;
  group_forward(dev, G, h, lse, uv);
  for (int j = 0; j < G.S; j++) dh.push_back(random_vec(size_t(G.N) * G.d, 95 + j));
  GroupGrads added = group_grads(G, 0.0f), written = group_grads(G, 0.0f);
  for (auto* list : {&written.dsrc, &written.dpart})
    for (Vec& v : *list) std::fill(v.begin(), v.end(), std::nanf(""));
  group_backward(dev, G, h, lse, uv, dh, added, 0, G.S);
  group_backward(dev, G, h, lse, uv, dh, written, 0, G.S, true);
  for (int s = 0; s < G.K; s++) EXPECT_EQ(written.dsrc[s], added.dsrc[s]) << "dsrc " << s;
  for (int j = 0; j < G.S; j++) {
    EXPECT_EQ(written.dpart[j], added.dpart[j]) << "dpart " << j;
    EXPECT_EQ(written.dw[j], added.dw[j]) << "dw " << j;
  }
}

// A site with one source and no partial (the first sublayer's: the
// embedding alone) has alpha = 1 and h = v, so dz = dh · v - dh · h is 0
// and its query and gain get no gradient: the kernels must compute dh · v
// and dh · h to the same bit, or rounding noise trains the query (AdamW
// turns noise into full-size steps).
TEST(OpsForward, AttnResOneSourceSiteHasNoQueryGradient) {
  Device dev;
  const SiteGroup G = make_site_group(1, 1, 40, 27, false, 20);
  std::vector<Vec> h, lse, uv, dh = {random_vec(size_t(40) * 27, 21)};
  group_forward(dev, G, h, lse, uv);
  EXPECT_EQ(h[0], G.src[0]);
  GroupGrads grads = group_grads(G, 0.0f);
  group_backward(dev, G, h, lse, uv, dh, grads, 0, 1);
  EXPECT_EQ(grads.dw[0], Vec(27, 0.0f));
  EXPECT_EQ(grads.dg[0], Vec(27, 0.0f));
  EXPECT_EQ(grads.dsrc[0], dh[0]);  // the value path only: alpha dh
}

TEST(OpsForward, CrossEntropy) {
  Device dev;
  const int N = 5, V = 11;
  std::vector<int32_t> tgt = {0, 10, 4, 4, 7};
  Vec logits = random_vec(N * V, 42, -5.0f, 5.0f), losses(N);
  ce_forward_whole(dev, losses.data(), logits.data(), tgt.data(), N, V);
  expect_near_rel(losses, ref_cross_entropy(to_double(logits), tgt, N, V), kTol, "ce");
  // Large logits must not overflow (max-subtracted).
  Vec big(V, 0.0f);
  big[3] = 1000.0f;
  float l;
  int32_t t3 = 3;
  ce_forward_whole(dev, &l, big.data(), &t3, 1, V);
  EXPECT_NEAR(l, 0.0f, 1e-6);
}

TEST(OpsForward, AdamWHandComputed) {
  Device dev;
  // Step 1 from m = v = 0: mhat = g, vhat = g^2, so the Adam term is
  // g / (|g| + eps) = 0.5 / (0.5 + 1e-8); decay adds wd * p = 0.1 * 1.
  float p = 1.0f, g = 0.5f, m = 0.0f, v = 0.0f;
  adamw_update(dev, &p, &g, &m, &v, 1, 0.1f, 0.9f, 0.999f, 1e-8f, 0.1f, 1);
  EXPECT_FLOAT_EQ(m, 0.05f);
  EXPECT_NEAR(v, 0.00025, 1e-8);  // 1 - 0.999f is 0.0010000467 in float
  EXPECT_NEAR(p, 1.0 - 0.1 * (0.5 / (0.5 + 1e-8) + 0.1), 1e-7);
  // Step 2 with g = -1: m = 0.9*0.05 - 0.1 = -0.055, v = 0.999*0.00025 + 0.001.
  const double p1 = p, m2 = -0.055, v2 = 0.999 * 0.00025 + 0.001;
  const double mhat = m2 / (1 - 0.81), vhat = v2 / (1 - 0.999 * 0.999);
  g = -1.0f;
  adamw_update(dev, &p, &g, &m, &v, 1, 0.1f, 0.9f, 0.999f, 1e-8f, 0.1f, 2);
  EXPECT_NEAR(m, m2, 1e-7);
  EXPECT_NEAR(v, v2, 1e-4 * v2);
  EXPECT_NEAR(p, p1 - 0.1 * (mhat / (std::sqrt(vhat) + 1e-8) + 0.1 * p1), 1e-6);
}

// sum() and sum_squares() write device memory: on the CPU, host memory.
double summed(const Device& dev, const float* x, size_t n, double acc = 0.0) {
  sum(dev, &acc, x, n);
  return acc;
}
double squares(const Device& dev, const float* x, size_t n) {
  std::vector<double> partial(sum_squares_scratch(n));
  double out = -1.0;
  sum_squares(dev, &out, partial.data(), x, n);
  return out;
}

TEST(OpsForward, SumSquares) {
  Device dev;
  Vec x = random_vec(100003, 43);
  double want = 0.0;
  for (float f : x) want += (double)f * f;
  EXPECT_NEAR(squares(dev, x.data(), x.size()), want, 1e-9 * want);
  EXPECT_EQ(squares(dev, x.data(), 0), 0.0);
}

// The loss sum adds in index order in double: exactly the sequential loop;
// the sum is then added to what the accumulator held.
TEST(OpsForward, SumIsSequentialInDouble) {
  Device dev;
  Vec x = random_vec(1001, 44, -5.0f, 5.0f);
  double want = 0.0;
  for (float f : x) want += f;
  const double got = summed(dev, x.data(), x.size());
  EXPECT_EQ(std::memcmp(&got, &want, sizeof(double)), 0);
  // Order matters for doubles: 1 + 1e16 - 1e16 differs from 1e16 - 1e16 + 1.
  const float big[3] = {1.0f, 1e16f, -1e16f};
  EXPECT_EQ(summed(dev, big, 3), (1.0 + double(1e16f)) - double(1e16f));
  EXPECT_EQ(summed(dev, x.data(), 0), 0.0);
  // Accumulating: the new sum is made on its own, then added.
  EXPECT_EQ(summed(dev, big, 3, 1e16), 1e16 + ((1.0 + double(1e16f)) - double(1e16f)));
}

TEST(OpsForward, MeasureSgemmRestoresThreads) {
  set_num_threads(1);
  const double gflops = measure_sgemm_gflops(2);
  EXPECT_GT(gflops, 0.1);  // any working CPU does 1e8 FLOP/s
  EXPECT_TRUE(std::isfinite(gflops));
  EXPECT_EQ(get_num_threads(), 1);
}

// The device peak's code (events around kernels::gemm), run on the CPU.
TEST(OpsForward, MeasureGemmOnADevice) {
  for (DType t : {DType::F32, DType::BF16}) {
    const double gflops = measure_gemm_gflops(Device{}, 128, t);
    EXPECT_GT(gflops, 0.1) << dtype_name(t);
    EXPECT_TRUE(std::isfinite(gflops)) << dtype_name(t);
  }
}

// ---- bitwise independence of the thread count -------------------------------
template <class Run>
void expect_same_bits_1_vs_2_threads(Run run, const char* what) {
  set_num_threads(1);
  Vec one = run();
  set_num_threads(2);
  Vec two = run();
  set_num_threads(1);
  ASSERT_EQ(one.size(), two.size());
  EXPECT_EQ(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)), 0) << what;
}

constexpr int kN = 1000, kD = 200;  // many row groups, d not a multiple of the column block

TEST(OpsDeterminism, RMSNormGain) {
  Device dev;
  Vec x = random_vec(kN * kD, 50), g = random_vec(kD, 51), dout = random_vec(kN * kD, 52);
  Vec out(kN * kD), rstd(kN);
  rmsnorm_forward(dev, out.data(), rstd.data(), x.data(), g.data(), kN, kD, 1e-6f);
  expect_same_bits_1_vs_2_threads(
      [&] {
        Vec dx(kN * kD), dg(kD, 0.25f);
        rmsnorm_backward(dev, dx.data(), dg.data(), dout.data(), x.data(), g.data(),
                         rstd.data(), kN, kD);
        dx.insert(dx.end(), dg.begin(), dg.end());
        return dx;
      },
      "rmsnorm dx, dg");
}

TEST(OpsDeterminism, AttnResQueryAndGain) {
  Device dev;
  const int K = 3, S = 2;
  const SiteGroup G = make_site_group(K, S, kN, kD, true, 60);
  std::vector<Vec> h, lse, uv, dh;
  group_forward(dev, G, h, lse, uv);
  for (int j = 0; j < S; j++) dh.push_back(random_vec(size_t(kN) * kD, 72 + j));
  expect_same_bits_1_vs_2_threads(
      [&] {
        GroupGrads r = group_grads(G, 0.0f);
        group_backward(dev, G, h, lse, uv, dh, r, 0, S);
        Vec all;
        for (auto* list : {&r.dsrc, &r.dpart, &r.dw, &r.dg})
          for (const Vec& v : *list) all.insert(all.end(), v.begin(), v.end());
        return all;
      },
      "attnres dsrc, dpart, dw, dg");
}

TEST(OpsDeterminism, EmbeddingBackward) {
  Device dev;
  const int vocab = 17;
  std::vector<int32_t> tok(kN);
  for (int n = 0; n < kN; n++) tok[n] = (n * 7 + n / 3) % vocab;
  Vec dout = random_vec(kN * kD, 80);
  expect_same_bits_1_vs_2_threads(
      [&] {
        Vec dt(vocab * kD, 0.0f);
        embedding_backward(dev, dt.data(), dout.data(), tok.data(), kN, kD, vocab, 0, vocab);
        return dt;
      },
      "embedding dtable");
}

TEST(OpsDeterminism, LinearWeightGradient) {
  Device dev;
  const int in = 96, out = 200;  // out not a multiple of the dW slice
  Vec x = random_vec(kN * in, 94), W = random_vec(out * in, 95), dy = random_vec(kN * out, 96);
  expect_same_bits_1_vs_2_threads(
      [&] {
        Vec y(kN * out), dx(kN * in), dW(out * in, 0.125f);
        linear_forward(dev, y.data(), x.data(), W.data(), kN, in, out);
        linear_backward(dev, dx.data(), dW.data(), dy.data(), x.data(), W.data(), kN, in,
                        out, false);
        for (const Vec* v : {&dx, &dW}) y.insert(y.end(), v->begin(), v->end());
        return y;
      },
      "linear y, dx, dW");
}

TEST(OpsDeterminism, GemmBf16) {
  Device dev;
  const int in = 96, out = 200;
  const std::vector<bf16> x = to_bf16_vec(random_vec(kN * in, 97)), dy = to_bf16_vec(random_vec(kN * out, 98));
  expect_same_bits_1_vs_2_threads(
      [&] {
        Vec dW(out * in, 0.125f), dx(kN * in);
        gemm(dev, true, false, out, in, kN, 1.0f, dy.data(), out, x.data(), in, 1.0f, dW.data(), in);
        gemm(dev, false, true, kN, in, in, 1.0f, x.data(), in, x.data(), in, 0.0f, dx.data(), in);
        dW.insert(dW.end(), dx.begin(), dx.end());
        return dW;
      },
      "bf16 gemm dW, x x^T");
}

// Not a row reduction, but each (batch, head) must not depend on which thread
// or how many threads run it.
TEST(OpsDeterminism, Attention) {
  Device dev;
  const int B = 2, T = 130, H = 3, hd = 16;
  const size_t n = (size_t)B * T * H * hd;
  Vec q = random_vec(n, 90), k = random_vec(n, 91), v = random_vec(n, 92),
      dout = random_vec(n, 93);
  expect_same_bits_1_vs_2_threads(
      [&] {
        Vec out(n), att((size_t)B * H * T * T), scratch(att.size()), dq(n), dk(n), dv(n);
        attention_forward(dev, out.data(), att.data(), q.data(), k.data(), v.data(), B,
                          T, H, hd);
        attention_backward(dev, dq.data(), dk.data(), dv.data(), scratch.data(),
                           dout.data(), att.data(), q.data(), k.data(), v.data(), B, T,
                           H, hd);
        for (const Vec* x : {&att, &dq, &dk, &dv}) out.insert(out.end(), x->begin(), x->end());
        return out;
      },
      "attention out, att, dq, dk, dv");
}

TEST(OpsDeterminism, SumSquares) {
  Device dev;
  Vec x = random_vec(1000003, 81);
  set_num_threads(1);
  const double one = squares(dev, x.data(), x.size());
  set_num_threads(2);
  const double two = squares(dev, x.data(), x.size());
  set_num_threads(1);
  EXPECT_EQ(std::memcmp(&one, &two, sizeof(double)), 0);
}

// A negative target masks its row (padding of a short evaluation batch): loss
// exactly 0 there and no gradient, the other rows unchanged.
TEST(OpsForward, CrossEntropyMaskedRows) {
  Device dev;
  const int N = 4, V = 7;
  const std::vector<int32_t> tgt = {3, 0, 6, 2}, masked = {3, -1, 6, -1};
  Vec logits = random_vec(N * V, 43, -5.0f, 5.0f), all(N), some(N), dlogits(N * V);
  ce_forward_whole(dev, all.data(), logits.data(), tgt.data(), N, V);
  ce_forward_whole(dev, some.data(), logits.data(), masked.data(), N, V);
  EXPECT_EQ(some[0], all[0]);
  EXPECT_EQ(some[1], 0.0f);
  EXPECT_EQ(some[2], all[2]);
  EXPECT_EQ(some[3], 0.0f);
  ce_backward_whole(dev, dlogits.data(), logits.data(), masked.data(), N, V, 1.0f);
  for (int i = 0; i < V; ++i) EXPECT_EQ(dlogits[1 * V + i], 0.0f);
}

// Vocabulary-parallel cross-entropy (DESIGN §6): two shards whose row
// statistics are combined (max, then sums) give the whole-vocabulary loss and
// each shard's columns of the whole gradient; a -1 target masks its row.
TEST(OpsForward, CrossEntropyOverVocabularyShards) {
  Device dev;
  const int N = 4, V = 10, Vl = V / 2;
  std::vector<int32_t> tgt = {7, 2, -1, 5};
  Vec logits = random_vec(N * V, 77, -4.0f, 4.0f), whole(N), dwhole(N * V);
  ce_forward_whole(dev, whole.data(), logits.data(), tgt.data(), N, V);
  ce_backward_whole(dev, dwhole.data(), logits.data(), tgt.data(), N, V, 0.5f);
  Vec shard[2], mx[2], se[2], tl[2];
  for (int r = 0; r < 2; ++r) {
    shard[r].resize(N * Vl), mx[r].resize(N), se[r].resize(N), tl[r].resize(N);
    for (int n = 0; n < N; ++n)
      for (int i = 0; i < Vl; ++i) shard[r][n * Vl + i] = logits[n * V + r * Vl + i];
    cross_entropy_row_max(dev, mx[r].data(), shard[r].data(), N, Vl);
  }
  Vec gmax(N), gsum(N), gtl(N), losses(N);
  for (int n = 0; n < N; ++n) gmax[n] = std::max(mx[0][n], mx[1][n]);
  for (int r = 0; r < 2; ++r)
    cross_entropy_row_sums(dev, se[r].data(), tl[r].data(), shard[r].data(), tgt.data(), gmax.data(), N, Vl,
                           r * Vl, V);
  for (int n = 0; n < N; ++n) gsum[n] = se[0][n] + se[1][n], gtl[n] = tl[0][n] + tl[1][n];
  cross_entropy_loss(dev, losses.data(), gmax.data(), gsum.data(), gtl.data(), tgt.data(), N);
  for (int n = 0; n < N; ++n) EXPECT_NEAR(losses[n], whole[n], 1e-6 * std::abs(whole[n]) + 1e-7) << n;
  EXPECT_EQ(losses[2], 0.0f);
  for (int r = 0; r < 2; ++r) {
    Vec d(N * Vl);
    cross_entropy_backward(dev, d.data(), shard[r].data(), tgt.data(), gmax.data(), gsum.data(), N, Vl, r * Vl, 0.5f);
    for (int n = 0; n < N; ++n)
      for (int i = 0; i < Vl; ++i) EXPECT_NEAR(d[n * Vl + i], dwhole[n * V + r * Vl + i], 1e-7) << n << "," << i;
  }
  for (int i = 0; i < V; ++i) EXPECT_EQ(dwhole[2 * V + i], 0.0f);  // the masked row
}

// A table shard gives the rows it holds and zeros for the others.
TEST(OpsForward, EmbeddingOverVocabularyShard) {
  Device dev;
  const int d = 3;
  std::vector<int32_t> tok = {0, 5, 3, 4};
  Vec table = random_vec(2 * d, 12), e(4 * d);  // rows 3 and 4 of a vocabulary of 6
  embedding_forward(dev, e.data(), tok.data(), table.data(), 4, d, 3, 2);
  for (int i = 0; i < d; ++i) {
    EXPECT_EQ(e[0 * d + i], 0.0f);
    EXPECT_EQ(e[1 * d + i], 0.0f);
    EXPECT_EQ(e[2 * d + i], table[0 * d + i]);
    EXPECT_EQ(e[3 * d + i], table[1 * d + i]);
  }
  Vec dtable(2 * d, 0.0f), dout = random_vec(4 * d, 13);
  embedding_backward(dev, dtable.data(), dout.data(), tok.data(), 4, d, 6, 3, 2);
  for (int i = 0; i < d; ++i) {
    EXPECT_EQ(dtable[0 * d + i], dout[2 * d + i]);
    EXPECT_EQ(dtable[1 * d + i], dout[3 * d + i]);
  }
}

}  // namespace
}  // namespace attnres::kernels
