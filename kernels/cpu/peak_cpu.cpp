// The CPU's measured GEMM rates, the denominators of MFU.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "kernels/device.h"
#include "kernels/peak.h"
#include "kernels/cpu/gemm_cpu.h"

namespace attnres::kernels {

double measure_sgemm_gflops(int threads) {
  constexpr int n = 1024, kWarmup = 2, kRuns = 5;
  const int prev = get_num_threads();
  set_num_threads(threads);
  std::vector<float> a((size_t)n * n), b((size_t)n * n), c((size_t)n * n, 0.0f);
  for (size_t i = 0; i < a.size(); i++) {
    a[i] = (float)((i * 7) % 13) / 13.0f - 0.5f;
    b[i] = (float)((i * 5) % 11) / 11.0f - 0.5f;
  }
  // OpenBLAS's own threading: the machine's best rate, not our kernels'.
  auto run = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(),
                n, b.data(), n, 0.0f, c.data(), n);
  };
  for (int i = 0; i < kWarmup; i++) run();
  std::vector<double> rates;
  for (int i = 0; i < kRuns; i++) {
    auto t0 = std::chrono::steady_clock::now();
    run();
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rates.push_back(2.0 * n * n * n / sec * 1e-9);
  }
  std::sort(rates.begin(), rates.end());
  set_num_threads(prev);
  return rates[kRuns / 2];
}

double measure_cpu_peak_gflops(DType precision, int threads) {
  if (precision == DType::F32) return measure_sgemm_gflops(threads);
  const int prev = get_num_threads();
  set_num_threads(threads);
  const double gflops = measure_gemm_gflops(Device{}, 1024, precision);
  set_num_threads(prev);
  return gflops;
}

std::string cpu_gemm_engine(DType precision) {
  if (precision == DType::BF16) return "bf16 GEMM " + cpu::onednn_gemm_engine(DType::BF16);
  return "fp32 sgemm, OpenBLAS";
}

}  // namespace attnres::kernels
