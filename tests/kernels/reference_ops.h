// Test-only helpers: random inputs, central finite differences, and
// independent double-precision re-implementations of the kernel ops written
// straight from the definitions in DESIGN §1 (not from kernels/rowops.h).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

namespace attnres::kernels::testing {

using Vec = std::vector<float>;
using DVec = std::vector<double>;

inline Vec random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Vec v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

inline DVec to_double(const Vec& v) { return DVec(v.begin(), v.end()); }

inline double dot(const DVec& a, const Vec& r) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); i++) s += a[i] * r[i];
  return s;
}

// Central differences of f at x, step h, in double.
inline DVec numeric_grad(const std::function<double(const DVec&)>& f, DVec x,
                         double h = 1e-4) {
  DVec g(x.size());
  for (size_t i = 0; i < x.size(); i++) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double fp = f(x);
    x[i] = x0 - h;
    const double fm = f(x);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

// Central differences at the listed coordinates only (for larger inputs);
// the other entries of the result are NaN and must not be compared.
inline DVec numeric_grad_at(const std::function<double(const DVec&)>& f, DVec x,
                            const std::vector<size_t>& at, double h = 1e-4) {
  DVec g(x.size(), std::nan(""));
  for (size_t i : at) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double fp = f(x);
    x[i] = x0 - h;
    const double fm = f(x);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

// max |a - n| / max(max |n|, 1e-2) < tol over the coordinates in `at`.
inline void expect_grad_near_at(const Vec& analytic, const DVec& numeric,
                                const std::vector<size_t>& at, double tol,
                                const char* what) {
  double err = 0.0, scale = 1e-2;
  for (size_t i : at) {
    err = std::max(err, std::abs((double)analytic[i] - numeric[i]));
    scale = std::max(scale, std::abs(numeric[i]));
  }
  EXPECT_LT(err / scale, tol) << what << ": max abs error " << err
                              << ", max |numeric| " << scale;
}

// max |a - n| / max(max |n|, 1e-2) < tol.
inline void expect_grad_near(const Vec& analytic, const DVec& numeric, double tol,
                             const char* what) {
  ASSERT_EQ(analytic.size(), numeric.size()) << what;
  std::vector<size_t> all(numeric.size());
  for (size_t i = 0; i < all.size(); i++) all[i] = i;
  expect_grad_near_at(analytic, numeric, all, tol, what);
}

inline void expect_near_rel(const Vec& got, const DVec& want, double tol,
                            const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); i++)
    ASSERT_NEAR(got[i], want[i], tol * std::max(1.0, std::abs(want[i])))
        << what << " at " << i;
}

// ---- double references ------------------------------------------------------
// y[n,o] = Σ_i x[n,i] W[o,i]
inline DVec ref_linear(const DVec& x, const DVec& W, int N, int in, int out) {
  DVec y((size_t)N * out, 0.0);
  for (int n = 0; n < N; n++)
    for (int o = 0; o < out; o++)
      for (int i = 0; i < in; i++) y[n * out + o] += x[n * in + i] * W[o * in + i];
  return y;
}

inline DVec ref_rmsnorm(const DVec& x, const DVec& g, int N, int d, double eps) {
  DVec y(x.size());
  for (int n = 0; n < N; n++) {
    double ms = 0.0;
    for (int i = 0; i < d; i++) ms += x[n * d + i] * x[n * d + i];
    ms /= d;
    for (int i = 0; i < d; i++) y[n * d + i] = g[i] * x[n * d + i] / std::sqrt(ms + eps);
  }
  return y;
}

// Rotate-half RoPE on [B*T, H, hd]: position t, pair (i, i + hd/2), angle
// t * theta^(-2i/hd).
inline DVec ref_rope(const DVec& x, int B, int T, int H, int hd, double theta) {
  DVec y(x.size());
  const int half = hd / 2;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++)
      for (int h = 0; h < H; h++) {
        const size_t o = (((size_t)b * T + t) * H + h) * hd;
        for (int i = 0; i < half; i++) {
          const double ang = t * std::pow(theta, -2.0 * i / hd);
          const double x1 = x[o + i], x2 = x[o + i + half];
          y[o + i] = x1 * std::cos(ang) - x2 * std::sin(ang);
          y[o + i + half] = x2 * std::cos(ang) + x1 * std::sin(ang);
        }
      }
  return y;
}

// Causal softmax attention, heads interleaved in [B*T, H*hd] rows.
inline DVec ref_attention(const DVec& q, const DVec& k, const DVec& v, int B, int T,
                          int H, int hd) {
  const int C = H * hd;
  DVec out(q.size(), 0.0);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
      for (int t = 0; t < T; t++) {
        DVec s(t + 1);
        double mx = -1e300;
        for (int j = 0; j <= t; j++) {
          double z = 0.0;
          for (int i = 0; i < hd; i++)
            z += q[(b * T + t) * C + h * hd + i] * k[(b * T + j) * C + h * hd + i];
          s[j] = z / std::sqrt((double)hd);
          mx = std::max(mx, s[j]);
        }
        double sum = 0.0;
        for (int j = 0; j <= t; j++) sum += (s[j] = std::exp(s[j] - mx));
        for (int j = 0; j <= t; j++)
          for (int i = 0; i < hd; i++)
            out[(b * T + t) * C + h * hd + i] +=
                s[j] / sum * v[(b * T + j) * C + h * hd + i];
      }
  return out;
}

inline DVec ref_swiglu(const DVec& gate, const DVec& up) {
  DVec y(gate.size());
  for (size_t i = 0; i < y.size(); i++)
    y[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
  return y;
}

// AttnRes site straight from DESIGN §1.1: k_s = g ⊙ v_s / rms(v_s),
// z_s = w · k_s, alpha = softmax(z), h = Σ alpha_s v_s. Optionally returns alpha.
inline DVec ref_attnres(const std::vector<DVec>& src, const DVec& w, const DVec& g,
                        int N, int d, double eps, DVec* alpha_out = nullptr) {
  const int K = (int)src.size();
  DVec h((size_t)N * d, 0.0);
  if (alpha_out) alpha_out->assign((size_t)N * K, 0.0);
  for (int n = 0; n < N; n++) {
    DVec z(K);
    for (int s = 0; s < K; s++) {
      double ms = 0.0;
      for (int i = 0; i < d; i++) ms += src[s][n * d + i] * src[s][n * d + i];
      const double inv = 1.0 / std::sqrt(ms / d + eps);
      z[s] = 0.0;
      for (int i = 0; i < d; i++) z[s] += w[i] * g[i] * src[s][n * d + i] * inv;
    }
    const double mx = *std::max_element(z.begin(), z.end());
    double sum = 0.0;
    for (auto& zs : z) sum += (zs = std::exp(zs - mx));
    for (int s = 0; s < K; s++) {
      const double a = z[s] / sum;
      if (alpha_out) (*alpha_out)[n * K + s] = a;
      for (int i = 0; i < d; i++) h[n * d + i] += a * src[s][n * d + i];
    }
  }
  return h;
}

// -log softmax(logits)[target] per row.
inline DVec ref_cross_entropy(const DVec& logits, const std::vector<int32_t>& tgt,
                              int N, int V) {
  DVec loss(N);
  for (int n = 0; n < N; n++) {
    double sum = 0.0;
    for (int i = 0; i < V; i++) sum += std::exp(logits[n * V + i]);
    loss[n] = std::log(sum) - logits[n * V + tgt[n]];
  }
  return loss;
}

}  // namespace attnres::kernels::testing
