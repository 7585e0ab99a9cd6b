// Kernel throughput at the shapes a small model uses. Thread count: all
// cores unless OMP_NUM_THREADS / OPENBLAS_NUM_THREADS say otherwise.
// GFLOP/s counters count useful FLOPs only (causal attention: the lower
// triangle), so they compare directly with the sgemm rate used for MFU.
// Rates use wall time: the kernels run on several threads.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/ops.h"
#include "kernels/peak.h"

namespace {

using namespace attnres::kernels;

std::vector<float> random_vec(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

benchmark::Counter gflops(double flops_per_iter) {
  return benchmark::Counter(flops_per_iter * 1e-9,
                            benchmark::Counter::kIsIterationInvariantRate);
}

// C[M,N] = A[M,K] B[K,N].
void BM_Sgemm(benchmark::State& state) {
  const int M = state.range(0), N = state.range(1), K = state.range(2);
  Device dev;
  auto A = random_vec((size_t)M * K, 1), B = random_vec((size_t)K * N, 2);
  std::vector<float> C((size_t)M * N);
  for (auto _ : state)
    gemm(dev, false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, C.data(), N);
  state.counters["GFLOP/s"] = gflops(2.0 * M * N * K);
}
BENCHMARK(BM_Sgemm)
    ->Args({2048, 256, 256})->Args({2048, 1024, 256})
    ->Args({2048, 256, 1024})->Args({2048, 1024, 1024})
    ->Args({1024, 1024, 1024})->UseRealTime()->Unit(benchmark::kMillisecond);

// Linear forward and full backward (dx and dW) of x[N,in] -> y[N,out].
void BM_Linear(benchmark::State& state) {
  const int N = state.range(0), in = state.range(1), out = state.range(2);
  const bool backward = state.range(3);
  Device dev;
  auto x = random_vec((size_t)N * in, 3), W = random_vec((size_t)out * in, 4),
       dy = random_vec((size_t)N * out, 5);
  std::vector<float> y((size_t)N * out), dx((size_t)N * in), dW((size_t)out * in);
  for (auto _ : state) {
    if (backward)
      linear_backward(dev, dx.data(), dW.data(), dy.data(), x.data(), W.data(), N, in,
                      out, false);
    else
      linear_forward(dev, y.data(), x.data(), W.data(), N, in, out);
  }
  state.counters["GFLOP/s"] = gflops((backward ? 4.0 : 2.0) * N * in * out);
}
BENCHMARK(BM_Linear)
    ->ArgNames({"N", "in", "out", "bwd"})
    ->Args({2048, 256, 256, 0})->Args({2048, 256, 256, 1})
    ->Args({2048, 256, 1024, 0})->Args({2048, 256, 1024, 1})
    ->Args({2048, 1024, 256, 0})->Args({2048, 1024, 256, 1})
    ->UseRealTime()->Unit(benchmark::kMillisecond);

// Causal attention, B*T = 2048 tokens. Useful FLOPs: QK^T and PV over the
// T(T+1)/2 lower triangle, 2 FLOPs per multiply-add: forward 2 matmuls,
// backward 4 (dP, dQ, dK, dV).
void BM_Attention(benchmark::State& state) {
  const int T = state.range(0), H = state.range(1), hd = state.range(2);
  const bool backward = state.range(3);
  const int B = 2048 / T;
  const size_t n = (size_t)B * T * H * hd;
  Device dev;
  auto q = random_vec(n, 6), k = random_vec(n, 7), v = random_vec(n, 8),
       dout = random_vec(n, 9);
  std::vector<float> out(n), att((size_t)B * H * T * T), scratch(att.size()), dq(n),
      dk(n), dv(n);
  attention_forward(dev, out.data(), att.data(), q.data(), k.data(), v.data(), B, T, H, hd);
  for (auto _ : state) {
    if (backward)
      attention_backward(dev, dq.data(), dk.data(), dv.data(), scratch.data(),
                         dout.data(), att.data(), q.data(), k.data(), v.data(), B, T,
                         H, hd);
    else
      attention_forward(dev, out.data(), att.data(), q.data(), k.data(), v.data(), B,
                        T, H, hd);
  }
  const double tri = (double)T * (T + 1) / 2;
  state.counters["GFLOP/s"] = gflops((backward ? 4.0 : 2.0) * 2.0 * B * H * tri * hd);
}
BENCHMARK(BM_Attention)
    ->ArgNames({"T", "H", "hd", "bwd"})
    ->Args({64, 4, 64, 0})->Args({64, 4, 64, 1})
    ->Args({256, 4, 64, 0})->Args({256, 4, 64, 1})
    ->Args({256, 8, 32, 0})->Args({256, 8, 32, 1})
    ->Args({512, 8, 64, 0})->Args({512, 8, 64, 1})
    ->UseRealTime()->Unit(benchmark::kMillisecond);

// AttnRes site over K sources of [2048, d]: memory-bound, report bytes read.
void BM_AttnRes(benchmark::State& state) {
  const int K = state.range(0), d = state.range(1);
  const bool backward = state.range(2);
  const int N = 2048;
  Device dev;
  std::vector<std::vector<float>> src(K), rstd(K, std::vector<float>(N)),
      dsrc(K, std::vector<float>((size_t)N * d));
  std::vector<const float*> sp(K), rp(K);
  std::vector<float*> dp(K);
  for (int s = 0; s < K; s++) {
    src[s] = random_vec((size_t)N * d, 10 + s);
    rms_inverse(dev, rstd[s].data(), src[s].data(), N, d, 1e-6f);
    sp[s] = src[s].data();
    rp[s] = rstd[s].data();
    dp[s] = dsrc[s].data();
  }
  auto w = random_vec(d, 20), g = random_vec(d, 21), dh = random_vec((size_t)N * d, 22);
  std::vector<float> h((size_t)N * d), alpha((size_t)N * K), uv(alpha.size()),
      scratch(attnres_backward_scratch(N, K, d)), dw(d), dg(d);
  attnres_forward(dev, h.data(), alpha.data(), uv.data(), sp.data(), rp.data(), K, w.data(),
                  g.data(), N, d);
  for (auto _ : state) {
    if (backward)
      attnres_backward(dev, dp.data(), dw.data(), dg.data(), scratch.data(), dh.data(),
                       alpha.data(), uv.data(), sp.data(), rp.data(), K, w.data(), g.data(), N, d);
    else
      attnres_forward(dev, h.data(), alpha.data(), uv.data(), sp.data(), rp.data(), K, w.data(),
                      g.data(), N, d);
  }
  // Forward reads each source twice (logits, sum) and writes h; backward reads
  // dh and the sources twice and reads and writes every dsrc.
  const double row = (double)N * d * sizeof(float);
  state.SetBytesProcessed(state.iterations() *
                          (int64_t)(backward ? (1 + 4.0 * K) * row : (2.0 * K + 1) * row));
}
BENCHMARK(BM_AttnRes)
    ->ArgNames({"K", "d", "bwd"})
    ->Args({3, 256, 0})->Args({3, 256, 1})->Args({9, 256, 0})->Args({9, 256, 1})
    ->Args({9, 1024, 0})->Args({9, 1024, 1})
    ->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_RMSNorm(benchmark::State& state) {
  const int N = 2048, d = state.range(0);
  const bool backward = state.range(1);
  Device dev;
  auto x = random_vec((size_t)N * d, 30), g = random_vec(d, 31),
       dout = random_vec((size_t)N * d, 32);
  std::vector<float> out((size_t)N * d), rstd(N), dx((size_t)N * d), dg(d);
  rmsnorm_forward(dev, out.data(), rstd.data(), x.data(), g.data(), N, d, 1e-6f);
  for (auto _ : state) {
    if (backward)
      rmsnorm_backward(dev, dx.data(), dg.data(), dout.data(), x.data(), g.data(),
                       rstd.data(), N, d);
    else
      rmsnorm_forward(dev, out.data(), rstd.data(), x.data(), g.data(), N, d, 1e-6f);
  }
  state.SetBytesProcessed(state.iterations() * (int64_t)N * d * sizeof(float) *
                          (backward ? 5 : 2));
}
BENCHMARK(BM_RMSNorm)->ArgNames({"d", "bwd"})
    ->Args({256, 0})->Args({256, 1})->Args({1024, 0})->Args({1024, 1})
    ->UseRealTime()->Unit(benchmark::kMicrosecond);

// The MFU denominator as the trainer measures it (median of 5 runs).
void BM_MeasuredPeak(benchmark::State& state) {
  double rate = 0.0;
  for (auto _ : state) rate = measure_sgemm_gflops(get_num_threads());
  state.counters["peak_GFLOP/s"] = rate;
}
BENCHMARK(BM_MeasuredPeak)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
