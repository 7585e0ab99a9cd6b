// measure_gemm_gflops (kernels/peak.h): kernels::gemm timed by events.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "kernels/memory.h"
#include "kernels/ops.h"
#include "kernels/peak.h"

namespace attnres::kernels {

template <class T>
static double measure_gemm_of(const Device& dev, int n) {
  constexpr int kWarmup = 2, kRuns = 5;
  const size_t nn = size_t(n) * size_t(n);
  std::vector<T> host(nn);
  for (size_t i = 0; i < nn; i++) {
    const float v = float((i * 7) % 13) / 13.0f - 0.5f;
    if constexpr (std::is_same_v<T, float>) host[i] = v;
    else host[i] = to_bf16(v);
  }
  DeviceBuffer<T> a(dev, nn), b(dev, nn);
  DeviceBuffer<float> c(dev, nn);
  from_host(dev, a.data(), host.data(), nn);
  from_host(dev, b.data(), host.data(), nn);
  auto run = [&] { gemm(dev, false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n); };
  for (int i = 0; i < kWarmup; i++) run();
  Event start = event_create(dev), end = event_create(dev);
  std::vector<double> rates;
  for (int i = 0; i < kRuns; i++) {
    event_record(start, dev);
    run();
    event_record(end, dev);
    event_synchronize(end);
    const double sec = std::max(1e-9, double(event_elapsed_ms(start, end)) * 1e-3);
    rates.push_back(2.0 * double(n) * n * n / sec * 1e-9);
  }
  event_destroy(start), event_destroy(end);
  std::sort(rates.begin(), rates.end());
  return rates[kRuns / 2];
}

double measure_gemm_gflops(const Device& dev, int n, DType operands) {
  return operands == DType::BF16 ? measure_gemm_of<bf16>(dev, n) : measure_gemm_of<float>(dev, n);
}

}  // namespace attnres::kernels
