// Analytic backward of every op against central finite differences of
// L = Σ r ⊙ out, where out comes from an independent double-precision
// reference (reference_ops.h). Outputs that ops.h says are overwritten are
// pre-filled with NaN (a kernel that reads them fails); accumulated outputs
// are pre-filled with kAcc and checked after subtracting it.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <tuple>

#include "kernels/ops.h"
#include "cross_entropy_whole.h"
#include "attnres_group.h"
#include "reference_ops.h"

namespace attnres::kernels {
namespace {

using namespace testing;

constexpr double kTol = 2e-3;
constexpr float kAcc = 0.5f;
const float kNaN = std::numeric_limits<float>::quiet_NaN();

Vec minus_acc(Vec v) {
  for (auto& x : v) x -= kAcc;
  return v;
}

TEST(OpsGrad, Linear) {
  Device dev;
  const int N = 5, in = 7, out = 4;
  Vec x = random_vec(N * in, 1), W = random_vec(out * in, 2), r = random_vec(N * out, 3);
  Vec dx(N * in, kNaN), dW(out * in, kAcc);
  linear_backward(dev, dx.data(), dW.data(), r.data(), x.data(), W.data(), N, in,
                  out, false);
  const DVec Wd = to_double(W), xd = to_double(x);
  auto gx = numeric_grad([&](const DVec& X) { return dot(ref_linear(X, Wd, N, in, out), r); }, xd);
  auto gW = numeric_grad([&](const DVec& Y) { return dot(ref_linear(xd, Y, N, in, out), r); }, Wd);
  expect_grad_near(dx, gx, kTol, "linear dx");
  expect_grad_near(minus_acc(dW), gW, kTol, "linear dW");
}

TEST(OpsGrad, Embedding) {
  Device dev;
  const int N = 9, d = 6, vocab = 5;
  std::vector<int32_t> tok = {0, 3, 3, 1, 4, 3, 0, 2, 3};  // repeats accumulate
  Vec table = random_vec(vocab * d, 4), r = random_vec(N * d, 5);
  Vec dtable(vocab * d, kAcc);
  embedding_backward(dev, dtable.data(), r.data(), tok.data(), N, d, vocab, 0, vocab);
  auto g = numeric_grad(
      [&](const DVec& T) {
        DVec out((size_t)N * d);
        for (int n = 0; n < N; n++)
          for (int i = 0; i < d; i++) out[n * d + i] = T[tok[n] * d + i];
        return dot(out, r);
      },
      to_double(table));
  expect_grad_near(minus_acc(dtable), g, kTol, "embedding dtable");
}

TEST(OpsGrad, RMSNorm) {
  Device dev;
  const int N = 4, d = 10;
  const float eps = 1e-6f;
  Vec x = random_vec(N * d, 6), g = random_vec(d, 7, 0.5f, 1.5f), r = random_vec(N * d, 8);
  Vec out(N * d), rstd(N), dx(N * d, kNaN), dg(d, kAcc), xdot(N, kNaN);
  rmsnorm_forward(dev, out.data(), rstd.data(), x.data(), g.data(), N, d, eps);
  rmsnorm_backward(dev, dx.data(), dg.data(), r.data(), x.data(), g.data(),
                   rstd.data(), N, d, xdot.data());
  // xdot is an AttnRes site's sdot: row::dot(dh, h), bit for bit.
  for (int n = 0; n < N; n++) EXPECT_EQ(xdot[n], row::dot(&dx[size_t(n) * d], &x[size_t(n) * d], d)) << "row " << n;
  const DVec xd = to_double(x), gd = to_double(g);
  auto ngx = numeric_grad([&](const DVec& X) { return dot(ref_rmsnorm(X, gd, N, d, eps), r); }, xd);
  auto ngg = numeric_grad([&](const DVec& G) { return dot(ref_rmsnorm(xd, G, N, d, eps), r); }, gd);
  expect_grad_near(dx, ngx, kTol, "rmsnorm dx");
  expect_grad_near(minus_acc(dg), ngg, kTol, "rmsnorm dg");
}

TEST(OpsGrad, Rope) {
  Device dev;
  const int B = 2, T = 5, H = 2, hd = 6;
  const float theta = 10000.0f;
  Vec cs(T * hd / 2), sn(T * hd / 2);
  rope_tables(cs.data(), sn.data(), T, hd, theta);
  Vec x = random_vec(B * T * H * hd, 9), r = random_vec(x.size(), 10);
  Vec dx = r;  // in place: dout in, dx out
  rope_backward(dev, dx.data(), cs.data(), sn.data(), B, T, H, hd);
  auto g = numeric_grad([&](const DVec& X) { return dot(ref_rope(X, B, T, H, hd, theta), r); },
                        to_double(x));
  expect_grad_near(dx, g, kTol, "rope dx");
}

TEST(OpsGrad, CausalAttention) {
  Device dev;
  const int B = 2, T = 5, H = 2, hd = 4, C = H * hd;
  const size_t n = (size_t)B * T * C;
  Vec q = random_vec(n, 11), k = random_vec(n, 12), v = random_vec(n, 13),
      r = random_vec(n, 14);
  Vec out(n), att((size_t)B * H * T * T), scratch(att.size(), kNaN);
  Vec dq(n, kNaN), dk(n, kNaN), dv(n, kNaN);
  attention_forward(dev, out.data(), att.data(), q.data(), k.data(), v.data(), B, T, H, hd);
  attention_backward(dev, dq.data(), dk.data(), dv.data(), scratch.data(), r.data(),
                     att.data(), q.data(), k.data(), v.data(), B, T, H, hd);
  const DVec qd = to_double(q), kd = to_double(k), vd = to_double(v);
  auto gq = numeric_grad([&](const DVec& X) { return dot(ref_attention(X, kd, vd, B, T, H, hd), r); }, qd);
  auto gk = numeric_grad([&](const DVec& X) { return dot(ref_attention(qd, X, vd, B, T, H, hd), r); }, kd);
  auto gv = numeric_grad([&](const DVec& X) { return dot(ref_attention(qd, kd, X, B, T, H, hd), r); }, vd);
  expect_grad_near(dq, gq, kTol, "attention dq");
  expect_grad_near(dk, gk, kTol, "attention dk");
  expect_grad_near(dv, gv, kTol, "attention dv");
}

// T spans several query tiles of the CPU kernel (and a partial last tile);
// coordinates are sampled, early and late positions alike.
TEST(OpsGrad, CausalAttentionLongSequence) {
  Device dev;
  const int B = 1, T = 150, H = 2, hd = 8, C = H * hd;
  const size_t n = (size_t)B * T * C;
  Vec q = random_vec(n, 31), k = random_vec(n, 32), v = random_vec(n, 33),
      r = random_vec(n, 34);
  Vec out(n), att((size_t)B * H * T * T), scratch(att.size(), kNaN);
  Vec dq(n, kNaN), dk(n, kNaN), dv(n, kNaN);
  attention_forward(dev, out.data(), att.data(), q.data(), k.data(), v.data(), B, T, H, hd);
  attention_backward(dev, dq.data(), dk.data(), dv.data(), scratch.data(), r.data(),
                     att.data(), q.data(), k.data(), v.data(), B, T, H, hd);
  std::vector<size_t> at;
  for (int t : {0, 1, 63, 64, 65, 100, 127, 128, 149})
    for (int c : {0, 5, 8, 15}) at.push_back((size_t)t * C + c);
  const DVec qd = to_double(q), kd = to_double(k), vd = to_double(v);
  auto gq = numeric_grad_at([&](const DVec& X) { return dot(ref_attention(X, kd, vd, B, T, H, hd), r); }, qd, at);
  auto gk = numeric_grad_at([&](const DVec& X) { return dot(ref_attention(qd, X, vd, B, T, H, hd), r); }, kd, at);
  auto gv = numeric_grad_at([&](const DVec& X) { return dot(ref_attention(qd, kd, X, B, T, H, hd), r); }, vd, at);
  expect_grad_near_at(dq, gq, at, kTol, "attention dq");
  expect_grad_near_at(dk, gk, at, kTol, "attention dk");
  expect_grad_near_at(dv, gv, at, kTol, "attention dv");
  for (size_t i = 0; i < n; i++)
    ASSERT_TRUE(std::isfinite(dq[i]) && std::isfinite(dk[i]) && std::isfinite(dv[i])) << i;
}

TEST(OpsGrad, SwiGLU) {
  Device dev;
  const size_t n = 40;
  Vec gate = random_vec(n, 15, -3.0f, 3.0f), up = random_vec(n, 16), r = random_vec(n, 17);
  Vec dgate(n, kNaN), dup(n, kNaN);
  swiglu_backward(dev, dgate.data(), dup.data(), r.data(), gate.data(), up.data(), n);
  const DVec gd = to_double(gate), ud = to_double(up);
  auto ngg = numeric_grad([&](const DVec& X) { return dot(ref_swiglu(X, ud), r); }, gd);
  auto ngu = numeric_grad([&](const DVec& X) { return dot(ref_swiglu(gd, X), r); }, ud);
  expect_grad_near(dgate, ngg, kTol, "swiglu dgate");
  expect_grad_near(dup, ngu, kTol, "swiglu dup");
}

// A group of sites through the two phases, forward and backward: every
// completed source, every site's partial source, query and gain against
// finite differences of L = Σ_j r_j · h_j. Every source gets both the
// value-path and the key-path gradient (the key path runs through u·v_s and
// through rstd_s(v_s)); queries are non-zero so the softmax gradient is
// exercised. Parameters: completed sources K, sites S, whether site 0 has a
// partial (a group cut mid-block) or not (a block's first site).
class AttnResGrad : public ::testing::TestWithParam<std::tuple<int, int, bool>> {};

TEST_P(AttnResGrad, SourcesPartialsQueriesAndGains) {
  Device dev;
  const auto [K, S, first_partial] = GetParam();
  const int N = 3, d = 8;
  const double eps = 1e-6;
  const SiteGroup G = make_site_group(K, S, N, d, first_partial, 100);
  std::vector<Vec> h, lse, uv, r;
  for (int j = 0; j < S; j++) r.push_back(random_vec(size_t(N) * d, 22 + j));
  group_forward(dev, G, h, lse, uv);
  GroupGrads got = group_grads(G, kAcc);
  group_backward(dev, G, h, lse, uv, r, got, 0, S);

  // L from the double reference, with one input replaced.
  auto loss = [&](int src, int part, int site, const DVec* X, bool query) {
    double L = 0;
    for (int j = 0; j < S; j++) {
      std::vector<DVec> srcs = site_sources(G, j);
      if (src >= 0) srcs[size_t(src)] = *X;
      if (part == j) srcs.back() = *X;
      const DVec w = site == j && query ? *X : to_double(G.w[j]), g = site == j && !query ? *X : to_double(G.g[j]);
      L += dot(ref_attnres(srcs, w, g, N, d, eps), r[j]);
    }
    return L;
  };
  for (int s = 0; s < K; s++)
    expect_grad_near(minus_acc(got.dsrc[s]),
                     numeric_grad([&](const DVec& X) { return loss(s, -1, -1, &X, false); }, to_double(G.src[s])),
                     kTol, ("dsrc[" + std::to_string(s) + "]").c_str());
  for (int j = 0; j < S; j++) {
    const std::string site = "site " + std::to_string(j);
    if (G.has_part(j))
      expect_grad_near(minus_acc(got.dpart[j]),
                       numeric_grad([&](const DVec& X) { return loss(-1, j, -1, &X, false); }, to_double(G.part[j])),
                       kTol, (site + " dpart").c_str());
    expect_grad_near(minus_acc(got.dw[j]),
                     numeric_grad([&](const DVec& X) { return loss(-1, -1, j, &X, true); }, to_double(G.w[j])), kTol,
                     (site + " dw").c_str());
    expect_grad_near(minus_acc(got.dg[j]),
                     numeric_grad([&](const DVec& X) { return loss(-1, -1, j, &X, false); }, to_double(G.g[j])),
                     kTol, (site + " dg").c_str());
  }
}

INSTANTIATE_TEST_SUITE_P(Groups, AttnResGrad,
                         ::testing::Values(std::make_tuple(1, 1, false), std::make_tuple(3, 1, true),
                                           std::make_tuple(2, 2, false), std::make_tuple(4, 3, true),
                                           std::make_tuple(5, 2, true)));

TEST(OpsGrad, CrossEntropy) {
  Device dev;
  const int N = 4, V = 7;
  const float scale = 0.25f;
  std::vector<int32_t> tgt = {3, 0, 6, 3};
  Vec logits = random_vec(N * V, 23, -2.0f, 2.0f), dlogits(N * V, kNaN);
  ce_backward_whole(dev, dlogits.data(), logits.data(), tgt.data(), N, V, scale);
  auto g = numeric_grad(
      [&](const DVec& X) {
        double s = 0.0;
        for (double l : ref_cross_entropy(X, tgt, N, V)) s += l;
        return scale * s;
      },
      to_double(logits));
  expect_grad_near(dlogits, g, kTol, "cross-entropy dlogits");
}

}  // namespace
}  // namespace attnres::kernels
