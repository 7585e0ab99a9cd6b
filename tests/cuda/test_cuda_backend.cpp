// The CUDA backend on a device: memory round trips, events, and GEMM against
// the CPU backend (cuBLAS against OpenBLAS, 1e-5 relative). Built wherever the
// backend is; without a usable device every test reports itself as skipped
// with the reason. docs/CUDA.md lists what has never run on a device.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/device.h"
#include "kernels/memory.h"
#include "kernels/ops.h"
#include "tests/cuda/require_device.h"
#include "tests/random_floats.h"

using namespace attnres::kernels;

TEST(CudaBackend, CopiesRoundTripAndZero) {
  REQUIRE_CUDA_DEVICE(dev);
  const std::vector<float> host = random_floats(1000, 1);
  {
    DeviceBuffer<float> a(dev, host.size()), b(dev, host.size());
    from_host(dev, a.data(), host.data(), host.size());
    copy(dev, b.data(), a.data(), host.size(), CopyKind::DeviceToDevice);
    EXPECT_EQ(to_host(dev, b.data(), host.size()), host);
    zero(dev, b.data(), host.size());
    EXPECT_EQ(to_host(dev, b.data(), host.size()), std::vector<float>(host.size(), 0.0f));
    EXPECT_EQ(allocated_bytes(dev), 2 * host.size() * sizeof(float));
  }
  EXPECT_EQ(allocated_bytes(dev), 0u);
  close_device(dev);
}

TEST(CudaBackend, EventsTimeTheStream) {
  REQUIRE_CUDA_DEVICE(dev);
  Event start = event_create(dev), end = event_create(dev);
  DeviceBuffer<float> a(dev, 1 << 20);
  event_record(start, dev);
  zero(dev, a.data(), a.size());
  event_record(end, dev);
  event_synchronize(end);
  EXPECT_GE(event_elapsed_ms(start, end), 0.0f);
  event_destroy(start), event_destroy(end);
  close_device(dev);
}

TEST(CudaBackend, GemmMatchesTheCpuBackend) {
  REQUIRE_CUDA_DEVICE(dev);
  const int M = 37, N = 19, K = 23;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const std::vector<float> A = random_floats(size_t(M) * K, 2), B = random_floats(size_t(K) * N, 3);
      std::vector<float> want = random_floats(size_t(M) * N, 4);
      DeviceBuffer<float> a(dev, A.size()), b(dev, B.size()), c(dev, want.size());
      from_host(dev, a.data(), A.data(), A.size());
      from_host(dev, b.data(), B.data(), B.size());
      from_host(dev, c.data(), want.data(), want.size());
      const int lda = ta ? M : K, ldb = tb ? K : N;
      gemm(Device{}, ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 0.25f, want.data(), N);
      gemm(dev, ta, tb, M, N, K, 0.5f, a.data(), lda, b.data(), ldb, 0.25f, c.data(), N);
      const std::vector<float> got = to_host(dev, c.data(), want.size());
      for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-5f * (1 + std::fabs(want[i])));
    }
  close_device(dev);
}
