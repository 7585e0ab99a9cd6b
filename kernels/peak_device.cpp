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
  std::vector<float> host(nn);
  for (size_t i = 0; i < nn; i++) host[i] = float((i * 7) % 13) / 13.0f - 0.5f;
  DeviceBuffer<float> staged(dev, nn), c(dev, nn);
  DeviceBuffer<T> a(dev, nn), b(dev, nn);
  from_host(dev, staged.data(), host.data(), nn);
  if constexpr (std::is_same_v<T, float>) {
    copy(dev, a.data(), staged.data(), nn, CopyKind::DeviceToDevice);
  } else {
    convert(dev, a.data(), staged.data(), nn);
  }
  copy(dev, b.data(), a.data(), nn, CopyKind::DeviceToDevice);
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
