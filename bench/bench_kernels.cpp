// Kernel throughput at the shapes a small model uses. Thread count: all
// cores unless OMP_NUM_THREADS / OPENBLAS_NUM_THREADS say otherwise.
// GFLOP/s counters count useful FLOPs only (causal attention: the lower
// triangle), so they compare directly with the sgemm rate used for MFU.
// Rates use wall time: the kernels run on several threads.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "kernels/cpu/gemm_cpu.h"
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

// One fp32 GEMM on each CPU library (range 0: 0 OpenBLAS, 1 oneDNN), the
// fp32 library choice of kernels/cpu/gemm_cpu.cpp. C[M,N] = op(A) op(B) +
// beta C, with the transposes the linear layers and attention tiles use.
void BM_Fp32GemmLibrary(benchmark::State& state) {
  const bool onednn = state.range(0);
  const bool ta = state.range(1), tb = state.range(2);
  const int M = state.range(3), N = state.range(4), K = state.range(5);
  const float beta = float(state.range(6));
  auto A = random_vec((size_t)M * K, 1), B = random_vec((size_t)K * N, 2);
  std::vector<float> C((size_t)M * N);
  const int lda = ta ? M : K, ldb = tb ? K : N;
  for (auto _ : state) {
    if (onednn) cpu::gemm_onednn(ta, tb, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, beta, C.data(), N);
    else cpu::gemm_openblas(ta, tb, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, beta, C.data(), N);
  }
  state.counters["GFLOP/s"] = gflops(2.0 * M * N * K);
}
// small.yaml (512 tokens a microbatch, d 256, d_ff 512): linear forward
// (A B^T), backward input (A B), backward weight (A^T B, accumulating);
// then attention's 64-row tiles (T 128, head 64).
void fp32_gemm_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"onednn", "ta", "tb", "M", "N", "K", "beta"});
  const std::vector<std::vector<int64_t>> shapes = {
      {0, 1, 512, 256, 256, 0}, {0, 1, 512, 512, 256, 0}, {0, 1, 512, 256, 512, 0},
      {0, 0, 512, 256, 256, 0}, {0, 0, 512, 512, 256, 0}, {0, 0, 512, 256, 512, 0},
      {1, 0, 256, 256, 512, 1}, {1, 0, 512, 256, 512, 1}, {1, 0, 256, 512, 512, 1},
      {0, 1, 64, 128, 64, 0},   {0, 0, 64, 64, 128, 0},   {1, 0, 128, 64, 64, 1}};
  for (const auto& s : shapes)
    for (int64_t lib : {0, 1}) b->Args({lib, s[0], s[1], s[2], s[3], s[4], s[5]});
}
BENCHMARK(BM_Fp32GemmLibrary)->Apply(fp32_gemm_shapes)->UseRealTime()->Unit(benchmark::kMicrosecond);

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

// This machine's memory bandwidth in the same run: STREAM's scale kernel
// (b = q a, read + write counted) over 256 MiB, split over the kernels'
// threads (get_num_threads()) as the kernels below run, median of 5,
// measured once and shared by the counters below. Not memcpy: glibc copies
// this large with non-temporal stores, which here ran at 0.4-0.8 of this
// rate, and the kernels use ordinary stores.
double copy_bytes_per_second() {
  static const double rate = [] {
    const size_t n = size_t(64) << 20;  // floats
    std::vector<float> a(n, 1.0f), b(n, 0.0f);
    const size_t threads = size_t(get_num_threads()), part = (n + threads - 1) / threads;
    const float q = a[0] * 0.5f;  // not a constant, so the loop is not made a memcpy
    std::vector<double> rates;
    for (int i = 0; i < 5; i++) {
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<std::thread> workers;
      for (size_t t = 0; t < threads; t++)
        workers.emplace_back([&, t, q] {  // q by value: a store to b could not change it
          const size_t lo = std::min(n, t * part), hi = std::min(n, lo + part);
          for (size_t j = lo; j < hi; j++) b[j] = q * a[j];
        });
      for (std::thread& w : workers) w.join();
      benchmark::DoNotOptimize(b.data());
      const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      rates.push_back(2.0 * double(n) * sizeof(float) / sec);
    }
    std::sort(rates.begin(), rates.end());
    return rates[2];
  }();
  return rate;
}

void BM_Copy(benchmark::State& state) {
  for (auto _ : state) state.counters["GB/s"] = copy_bytes_per_second() * 1e-9;
}
BENCHMARK(BM_Copy)->Iterations(1)->Unit(benchmark::kMillisecond);

// One AttnRes site group as a microbatch of N = 2048 rows runs it: S sites
// of a block over K completed sources (the first site without a partial),
// forward (phase 1 and the merges) or backward (the sites' partial parts and
// the group's completed part). The bytes it must move, at the least: forward
// reads the K sources, the S - 1 partials and writes S outputs and their
// u . v rows; backward reads the K sources, dh and u . v of each site,
// reads and writes the K source gradients, and reads the S - 1 partials and
// their gradients and writes them (sdot = dh · h comes with dh, from the
// norm's backward).
// of_copy is that over the copy bandwidth of the same run.
void BM_AttnResBlock(benchmark::State& state) {
  const int K = state.range(0), S = state.range(1), d = state.range(2);
  const bool backward = state.range(3);
  const int N = 2048;
  const size_t Nd = size_t(N) * d;
  Device dev;
  auto vecs = [](int n, size_t len, unsigned seed) {
    std::vector<std::vector<float>> v;
    for (int i = 0; i < n; i++) v.push_back(random_vec(len, seed + unsigned(i)));
    return v;
  };
  auto ptrs = [](std::vector<std::vector<float>>& v) {
    std::vector<float*> p;
    for (auto& x : v) p.push_back(x.data());
    return p;
  };
  auto src = vecs(K, Nd, 10), dsrc = vecs(K, Nd, 20), rstd = vecs(K, N, 30), part = vecs(S, Nd, 40),
       prstd = vecs(S, N, 50), dpart = vecs(S, Nd, 60), h = vecs(S, Nd, 70), lse = vecs(S, N, 80), w = vecs(S, d, 90),
       g = vecs(S, d, 100), dh = vecs(S, Nd, 110), sdot = vecs(S, N, 120), dw = vecs(S, d, 130), dg = vecs(S, d, 140),
       uv = vecs(S, size_t(N) * K, 150);
  for (int s = 0; s < K; s++) rms_inverse(dev, rstd[s].data(), src[s].data(), N, d, 1e-6f);
  for (int j = 0; j < S; j++) rms_inverse(dev, prstd[j].data(), part[j].data(), N, d, 1e-6f);
  const auto sp = ptrs(src), rp = ptrs(rstd), dsp = ptrs(dsrc), hp = ptrs(h), lp = ptrs(lse), wp = ptrs(w), gp = ptrs(g),
             dhp = ptrs(dh), sdp = ptrs(sdot), dwp = ptrs(dw), dgp = ptrs(dg), up = ptrs(uv);
  std::vector<float> scratch(std::max(attnres_block_backward_scratch(N, S, d), attnres_partial_backward_scratch(N, d)));
  auto forward = [&] {
    attnres_block_forward(dev, hp.data(), lp.data(), up.data(), sp.data(), rp.data(), K, wp.data(), gp.data(), S, N,
                          d);
    for (int j = 1; j < S; j++)
      attnres_merge_partial(dev, hp[j], lp[j], part[j].data(), prstd[j].data(), wp[j], gp[j], N, d);
  };
  forward();
  for (auto _ : state) {
    if (!backward) {
      forward();
      continue;
    }
    for (int j = S - 1; j >= 1; j--)  // site 0 starts a block: no partial source
      attnres_partial_backward(dev, dpart[j].data(), dwp[j], dgp[j], scratch.data(), dhp[j], sdp[j], lp[j],
                               part[j].data(), prstd[j].data(), wp[j], gp[j], N, d, false);
    attnres_block_backward(dev, dsp.data(), dwp.data(), dgp.data(), scratch.data(), dhp.data(), sdp.data(), lp.data(),
                           up.data(), sp.data(), rp.data(), K, wp.data(), gp.data(), S, N, d, false);
  }
  const double uv_tensors = double(S) * K / d;  // the sites' u . v rows, K floats per row each
  const double tensors = (backward ? 3.0 * K + S + 3.0 * (S - 1) : double(K) + (S - 1) + S) + uv_tensors;
  const double bytes = tensors * double(Nd) * sizeof(float);
  state.SetBytesProcessed(int64_t(double(state.iterations()) * bytes));
  state.counters["of_copy"] =
      benchmark::Counter(bytes / copy_bytes_per_second(), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_AttnResBlock)
    ->ArgNames({"K", "S", "d", "bwd"})
    ->Args({3, 2, 256, 0})->Args({3, 2, 256, 1})->Args({9, 2, 256, 0})->Args({9, 2, 256, 1})
    ->Args({5, 4, 256, 0})->Args({5, 4, 256, 1})->Args({9, 2, 1024, 0})->Args({9, 2, 1024, 1})
    ->Args({17, 1, 256, 0})->Args({17, 1, 256, 1})
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
