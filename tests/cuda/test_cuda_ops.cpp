// Every op of kernels/ops.h on the device against the CPU backend, from the
// same inputs. The single-source bodies run the same arithmetic on both, but
// nvcc and g++ contract a·b + c into FMAs in different places and the
// device's expf/logf are not glibc's, so results may differ in their last
// bits: 2e-6 relative is allowed (GEMM-based ops 1e-5). Without a usable
// device every test reports itself as skipped with the reason; nothing here
// has run on a GPU yet (docs/CUDA.md).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/device.h"
#include "kernels/memory.h"
#include "kernels/ops.h"
#include "tests/cuda/require_device.h"
#include "tests/random_floats.h"

using namespace attnres::kernels;

namespace {

// The same values on the host (the CPU backend's memory) and on the device.
template <class T>
struct Twin {
  std::vector<T> host;
  DeviceBuffer<T> device;
  Twin(const Device& dev, std::vector<T> v) : host(std::move(v)), device(dev, host.size()) {
    from_host(dev, device.data(), host.data(), host.size());
  }
  std::vector<T> device_values(const Device& dev) const { return to_host(dev, device.data(), host.size()); }
};

void expect_close(const std::vector<float>& device, const std::vector<float>& cpu, double rel, const char* what) {
  ASSERT_EQ(device.size(), cpu.size()) << what;
  for (size_t i = 0; i < cpu.size(); ++i)
    ASSERT_NEAR(device[i], cpu[i], rel * (1.0 + std::fabs(cpu[i]))) << what << "[" << i << "]";
}
template <class T>
void expect_twin(const Device& dev, const Twin<T>& t, double rel, const char* what) {
  expect_close(t.device_values(dev), t.host, rel, what);
}

std::vector<int32_t> ids(size_t n, int vocab, uint32_t seed) {
  std::vector<int32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = int32_t((i * 7919u + seed) % unsigned(vocab));
  return v;
}

constexpr double kBody = 2e-6, kGemm = 1e-5;

}  // namespace

TEST(CudaOps, ElementwiseAndAdamW) {
  REQUIRE_CUDA_DEVICE(dev);
  const size_t n = 5000;
  Twin<float> y(dev, random_floats(n, 1)), x(dev, random_floats(n, 2)), out(dev, std::vector<float>(n));
  add_inplace(Device{}, y.host.data(), x.host.data(), n);
  add_inplace(dev, y.device.data(), x.device.data(), n);
  add(Device{}, out.host.data(), y.host.data(), x.host.data(), n);
  add(dev, out.device.data(), y.device.data(), x.device.data(), n);
  scale_inplace(Device{}, out.host.data(), 0.3f, n);
  scale_inplace(dev, out.device.data(), 0.3f, n);
  expect_twin(dev, out, kBody, "add, add_inplace, scale_inplace");

  Twin<float> act(dev, std::vector<float>(n)), dg(dev, std::vector<float>(n)), du(dev, std::vector<float>(n));
  swiglu_forward(Device{}, act.host.data(), y.host.data(), x.host.data(), n);
  swiglu_forward(dev, act.device.data(), y.device.data(), x.device.data(), n);
  swiglu_backward(Device{}, dg.host.data(), du.host.data(), out.host.data(), y.host.data(), x.host.data(), n);
  swiglu_backward(dev, dg.device.data(), du.device.data(), out.device.data(), y.device.data(), x.device.data(), n);
  expect_twin(dev, act, kBody, "swiglu_forward");
  expect_twin(dev, dg, kBody, "swiglu_backward dgate");
  expect_twin(dev, du, kBody, "swiglu_backward dup");

  Twin<float> m(dev, std::vector<float>(n, 0.01f)), v(dev, std::vector<float>(n, 0.02f));
  for (int t = 1; t <= 3; ++t) {
    adamw_update(Device{}, y.host.data(), x.host.data(), m.host.data(), v.host.data(), n, 1e-3f, 0.9f, 0.95f, 1e-8f,
                 0.1f, t);
    adamw_update(dev, y.device.data(), x.device.data(), m.device.data(), v.device.data(), n, 1e-3f, 0.9f, 0.95f,
                 1e-8f, 0.1f, t);
  }
  expect_twin(dev, y, kBody, "adamw params");
  expect_twin(dev, v, kBody, "adamw second moment");
  // The sums on either backend, read back: [sum, sum of squares].
  auto sums = [&](const Device& on, const float* x) {
    DeviceBuffer<double> out(on, 2), partial(on, sum_squares_scratch(n));
    zero(on, out.data(), 1);
    sum(on, out.data(), x, n);
    sum_squares(on, out.data() + 1, partial.data(), x, n);
    return to_host(on, out.data(), 2);
  };
  const std::vector<double> got = sums(dev, y.device.data()), want = sums(Device{}, y.host.data());
  EXPECT_NEAR(got[0], want[0], 1e-9 * n);
  EXPECT_NEAR(got[1], want[1], 1e-9 * n);
  close_device(dev);
}

TEST(CudaOps, NormRopeEmbeddingAndCrossEntropy) {
  REQUIRE_CUDA_DEVICE(dev);
  const int N = 70, d = 48, V = 37, T = 35, H = 4, hd = d / H;
  Twin<float> x(dev, random_floats(size_t(N) * d, 3)), g(dev, random_floats(size_t(d), 4)),
      dout(dev, random_floats(size_t(N) * d, 5)), out(dev, std::vector<float>(size_t(N) * d)),
      rstd(dev, std::vector<float>(size_t(N))), dx(dev, std::vector<float>(size_t(N) * d)),
      dgain(dev, std::vector<float>(size_t(d))), xdot(dev, std::vector<float>(size_t(N)));
  rmsnorm_forward(Device{}, out.host.data(), rstd.host.data(), x.host.data(), g.host.data(), N, d, 1e-6f);
  rmsnorm_forward(dev, out.device.data(), rstd.device.data(), x.device.data(), g.device.data(), N, d, 1e-6f);
  rmsnorm_backward(Device{}, dx.host.data(), dgain.host.data(), dout.host.data(), x.host.data(), g.host.data(),
                   rstd.host.data(), N, d, xdot.host.data());
  rmsnorm_backward(dev, dx.device.data(), dgain.device.data(), dout.device.data(), x.device.data(), g.device.data(),
                   rstd.device.data(), N, d, xdot.device.data());
  expect_twin(dev, out, kBody, "rmsnorm_forward");
  expect_twin(dev, dx, kBody, "rmsnorm_backward dx");
  expect_twin(dev, dgain, kBody, "rmsnorm_backward dg");
  expect_twin(dev, xdot, kBody, "rmsnorm_backward xdot");
  rms_inverse(Device{}, rstd.host.data(), x.host.data(), N, d, 1e-6f);
  rms_inverse(dev, rstd.device.data(), x.device.data(), N, d, 1e-6f);
  expect_twin(dev, rstd, kBody, "rms_inverse");
  add_rms_inverse(Device{}, out.host.data(), rstd.host.data(), x.host.data(), dout.host.data(), N, d, 1e-6f);
  add_rms_inverse(dev, out.device.data(), rstd.device.data(), x.device.data(), dout.device.data(), N, d, 1e-6f);
  expect_twin(dev, out, kBody, "add_rms_inverse sum");
  expect_twin(dev, rstd, kBody, "add_rms_inverse rstd");

  std::vector<float> cos_t(size_t(T) * hd / 2), sin_t(size_t(T) * hd / 2);
  rope_tables(cos_t.data(), sin_t.data(), T, hd, 10000.0f);
  Twin<float> c(dev, cos_t), s(dev, sin_t);
  rope_forward(Device{}, x.host.data(), c.host.data(), s.host.data(), 2, T, H, hd);
  rope_forward(dev, x.device.data(), c.device.data(), s.device.data(), 2, T, H, hd);
  rope_backward(Device{}, dout.host.data(), c.host.data(), s.host.data(), 2, T, H, hd);
  rope_backward(dev, dout.device.data(), c.device.data(), s.device.data(), 2, T, H, hd);
  expect_twin(dev, x, kBody, "rope_forward");
  expect_twin(dev, dout, kBody, "rope_backward");

  Twin<int32_t> tokens(dev, ids(size_t(N), V, 1)), targets(dev, ids(size_t(N), V, 2));
  Twin<float> table(dev, random_floats(size_t(V) * d, 6)), dtable(dev, std::vector<float>(size_t(V) * d));
  embedding_forward(Device{}, out.host.data(), tokens.host.data(), table.host.data(), N, d, 0, V);
  embedding_forward(dev, out.device.data(), tokens.device.data(), table.device.data(), N, d, 0, V);
  embedding_backward(Device{}, dtable.host.data(), dout.host.data(), tokens.host.data(), N, d, V, 0, V);
  embedding_backward(dev, dtable.device.data(), dout.device.data(), tokens.device.data(), N, d, V, 0, V);
  expect_twin(dev, out, kBody, "embedding_forward");
  expect_twin(dev, dtable, kBody, "embedding_backward");

  Twin<float> logits(dev, random_floats(size_t(N) * V, 7)), mx(dev, std::vector<float>(size_t(N))),
      sums(dev, std::vector<float>(2 * size_t(N))), losses(dev, std::vector<float>(size_t(N))),
      dlogits(dev, std::vector<float>(size_t(N) * V));
  auto ce = [&](const Device& on, bool host) {
    auto p = [&](Twin<float>& t) { return host ? t.host.data() : t.device.data(); };
    const int32_t* tg = host ? targets.host.data() : targets.device.data();
    cross_entropy_row_max(on, p(mx), p(logits), N, V);
    cross_entropy_row_sums(on, p(sums), p(sums) + N, p(logits), tg, p(mx), N, V, 0, V);
    cross_entropy_loss(on, p(losses), p(mx), p(sums), p(sums) + N, tg, N);
    cross_entropy_backward(on, p(dlogits), p(logits), tg, p(mx), p(sums), N, V, 0, 0.5f);
  };
  ce(Device{}, true);
  ce(dev, false);
  expect_twin(dev, losses, kBody, "cross_entropy_loss");
  expect_twin(dev, dlogits, kBody, "cross_entropy_backward");
  close_device(dev);
}

// A group of two sites over three completed sources, the second with a
// partial source: phase 1, the merge, and both backward parts.
TEST(CudaOps, AttnResTwoPhasesForwardAndBackward) {
  REQUIRE_CUDA_DEVICE(dev);
  const int N = 70, d = 40, K = 3, S = 2;
  auto rows = [&](uint32_t seed) {
    std::vector<float> r(static_cast<size_t>(N));
    for (int n = 0; n < N; ++n) r[size_t(n)] = 0.5f + 0.01f * float((n + seed) % 7);
    return r;
  };
  auto zeros = [](size_t n) { return std::vector<float>(n); };
  std::vector<Twin<float>> src, rstd, dsrc, h, lse, uv, w, g, dh, sdot, dw, dg;
  for (int s = 0; s < K; ++s) {
    src.emplace_back(dev, random_floats(size_t(N) * d, uint32_t(10 + s)));
    rstd.emplace_back(dev, rows(uint32_t(s)));
    dsrc.emplace_back(dev, zeros(size_t(N) * d));
  }
  for (int j = 0; j < S; ++j) {
    h.emplace_back(dev, zeros(size_t(N) * d)), lse.emplace_back(dev, zeros(size_t(N)));
    uv.emplace_back(dev, zeros(size_t(N) * K));
    w.emplace_back(dev, random_floats(size_t(d), uint32_t(20 + j))), g.emplace_back(dev, random_floats(size_t(d), uint32_t(30 + j)));
    dh.emplace_back(dev, random_floats(size_t(N) * d, uint32_t(40 + j))), sdot.emplace_back(dev, random_floats(size_t(N), uint32_t(60 + j)));
    dw.emplace_back(dev, zeros(size_t(d))), dg.emplace_back(dev, zeros(size_t(d)));
  }
  Twin<float> part(dev, random_floats(size_t(N) * d, 50)), part_rstd(dev, rows(5)),
      gain(dev, random_floats(size_t(d), 55)), xn(dev, zeros(size_t(N) * d)), xn_rstd(dev, zeros(size_t(N))),
      dpart(dev, zeros(size_t(N) * d)),
      scratch(dev, zeros(std::max(attnres_block_backward_scratch(N, S, d), attnres_partial_backward_scratch(N, d))));
  // Host arrays of pointers to each twin's host or device copy.
  auto pointers = [](std::vector<Twin<float>>& v, bool host) {
    std::vector<float*> p;
    for (Twin<float>& t : v) p.push_back(host ? t.host.data() : t.device.data());
    return p;
  };
  auto at = [](Twin<float>& t, bool host) { return host ? t.host.data() : t.device.data(); };
  auto run = [&](const Device& on, bool host) {
    const auto sp = pointers(src, host), rp = pointers(rstd, host), dsp = pointers(dsrc, host);
    const auto hp = pointers(h, host), lp = pointers(lse, host), wp = pointers(w, host), gp = pointers(g, host);
    const auto up = pointers(uv, host);
    const auto dhp = pointers(dh, host), sdp = pointers(sdot, host), dwp = pointers(dw, host), dgp = pointers(dg, host);
    attnres_block_forward(on, hp.data(), lp.data(), up.data(), sp.data(), rp.data(), K, wp.data(), gp.data(), S, N,
                          d);
    attnres_merge_partial(on, hp[1], lp[1], at(part, host), at(part_rstd, host), wp[1], gp[1], N, d, at(xn, host),
                          at(xn_rstd, host), at(gain, host), 1e-6f);
    attnres_partial_backward(on, at(dpart, host), dwp[1], dgp[1], at(scratch, host), dhp[1], sdp[1], lp[1],
                             at(part, host), at(part_rstd, host), wp[1], gp[1], N, d, false);
    attnres_block_backward(on, dsp.data(), dwp.data(), dgp.data(), at(scratch, host), dhp.data(), sdp.data(), lp.data(),
                           up.data(), sp.data(), rp.data(), K, wp.data(), gp.data(), S, N, d, false);
  };
  run(Device{}, true);
  run(dev, false);
  for (int j = 0; j < S; ++j) {
    expect_twin(dev, h[size_t(j)], kBody, "attnres h");
    expect_twin(dev, lse[size_t(j)], kBody, "attnres lse");
    expect_twin(dev, uv[size_t(j)], kBody, "attnres u . v");
    expect_twin(dev, dw[size_t(j)], kBody, "attnres dw");
    expect_twin(dev, dg[size_t(j)], kBody, "attnres dg");
  }
  expect_twin(dev, xn, kBody, "attnres merge's norm");
  expect_twin(dev, xn_rstd, kBody, "attnres merge's norm rstd");
  for (int s = 0; s < K; ++s) expect_twin(dev, dsrc[size_t(s)], kBody, "attnres dsrc");
  expect_twin(dev, dpart, kBody, "attnres dpart");
  close_device(dev);
}

TEST(CudaOps, AttentionForwardBackwardAndDecode) {
  REQUIRE_CUDA_DEVICE(dev);
  const int B = 2, T = 33, H = 2, hd = 8;
  const size_t n = size_t(B) * T * H * hd, tt = size_t(B) * H * T * T;
  Twin<float> q(dev, random_floats(n, 30)), k(dev, random_floats(n, 31)), v(dev, random_floats(n, 32)),
      dout(dev, random_floats(n, 33)), out(dev, std::vector<float>(n)), att(dev, std::vector<float>(tt)),
      dq(dev, std::vector<float>(n)), dk(dev, std::vector<float>(n)), dv(dev, std::vector<float>(n)),
      scratch(dev, std::vector<float>(tt));
  attention_forward(Device{}, out.host.data(), att.host.data(), q.host.data(), k.host.data(), v.host.data(), B, T, H,
                    hd);
  attention_forward(dev, out.device.data(), att.device.data(), q.device.data(), k.device.data(), v.device.data(), B,
                    T, H, hd);
  expect_twin(dev, out, kGemm, "attention_forward");
  attention_backward(Device{}, dq.host.data(), dk.host.data(), dv.host.data(), scratch.host.data(), dout.host.data(),
                     att.host.data(), q.host.data(), k.host.data(), v.host.data(), B, T, H, hd);
  attention_backward(dev, dq.device.data(), dk.device.data(), dv.device.data(), scratch.device.data(),
                     dout.device.data(), att.device.data(), q.device.data(), k.device.data(), v.device.data(), B, T,
                     H, hd);
  expect_twin(dev, dq, kGemm, "attention_backward dq");
  expect_twin(dev, dk, kGemm, "attention_backward dk");
  expect_twin(dev, dv, kGemm, "attention_backward dv");
  Twin<float> dec(dev, std::vector<float>(size_t(H) * hd)), scores(dev, std::vector<float>(size_t(H) * T));
  attention_decode(Device{}, dec.host.data(), scores.host.data(), q.host.data(), k.host.data(), v.host.data(), T, H,
                   hd);
  attention_decode(dev, dec.device.data(), scores.device.data(), q.device.data(), k.device.data(), v.device.data(), T,
                   H, hd);
  expect_twin(dev, dec, kGemm, "attention_decode");
  close_device(dev);
}
