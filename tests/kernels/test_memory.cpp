// The memory API (kernels/memory.h) on the CPU backend, and the dispatch's
// refusal of a backend that is not built.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels/memory.h"
#include "kernels/ops.h"

namespace attnres::kernels {
namespace {

TEST(Memory, CounterFollowsRequestedBytes) {
  const Device dev;
  const size_t before = allocated_bytes(dev);
  void* p = alloc_bytes(dev, 100);  // rounded up inside, counted as asked
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
  EXPECT_EQ(allocated_bytes(dev), before + 100);
  {
    DeviceBuffer<int32_t> ids(dev, 10);
    EXPECT_EQ(allocated_bytes(dev), before + 140);
    DeviceBuffer<int32_t> moved = std::move(ids);  // ownership moves, bytes do not double
    EXPECT_EQ(allocated_bytes(dev), before + 140);
    EXPECT_EQ(ids.data(), nullptr);
    EXPECT_EQ(moved.size(), 10u);
  }
  EXPECT_EQ(allocated_bytes(dev), before + 100);
  free_bytes(dev, p);
  EXPECT_EQ(allocated_bytes(dev), before);
  EXPECT_EQ(alloc_bytes(dev, 0), nullptr);
  EXPECT_EQ(allocated_bytes(dev), before);
  // Another device has its own counter.
  EXPECT_EQ(allocated_bytes(Device{Backend::CPU, 1, nullptr}), 0u);
}

TEST(Memory, CopiesInEveryDirectionAndZero) {
  const Device dev;
  std::vector<float> src(37);
  for (size_t i = 0; i < src.size(); ++i) src[i] = float(i) * 0.5f - 3.0f;
  DeviceBuffer<float> a(dev, src.size()), b(dev, src.size());
  from_host(dev, a.data(), src.data(), src.size());
  copy(dev, b.data(), a.data(), src.size(), CopyKind::DeviceToDevice);
  EXPECT_EQ(to_host(dev, b.data(), b.size()), src);
  zero(dev, b.data(), b.size());
  EXPECT_EQ(to_host(dev, b.data(), b.size()), std::vector<float>(src.size(), 0.0f));
  float* pinned = static_cast<float*>(alloc_pinned(dev, src.size() * sizeof(float)));
  copy(dev, pinned, a.data(), src.size(), CopyKind::DeviceToHost);
  synchronize(dev);
  EXPECT_EQ(std::vector<float>(pinned, pinned + src.size()), src);
  free_pinned(dev, pinned);
}

TEST(Memory, EventsMeasureElapsedTime) {
  const Device dev;
  Event start = event_create(dev), end = event_create(dev);
  event_record(start, dev);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  event_record(end, dev);
  stream_wait_event(dev, end);
  event_synchronize(end);
  const float ms = event_elapsed_ms(start, end);
  EXPECT_GE(ms, 19.0f);
  EXPECT_LT(ms, 5000.0f);
  event_destroy(start), event_destroy(end);
}

TEST(Memory, UnknownPointerIsABug) {
  float x = 0;
  EXPECT_THROW(free_bytes(Device{}, &x), std::logic_error);
}

// A CUDA call in a binary without the backend names itself and says so; with
// the backend but no usable device, it fails naming itself and the CUDA,
// cuBLAS or launch error. Nothing runs either way.
TEST(Dispatch, CudaCallsWithoutBackendOrDeviceFailClearly) {
  std::string no_device;
  if (cuda_built() && cuda_device_count(&no_device) > 0) GTEST_SKIP() << "this machine has a CUDA device";
  const Device cuda{Backend::CUDA, 0, nullptr};
  float x[4] = {1, 2, 3, 4};
  auto expect_error = [&](auto call, const char* name) {
    try {
      call();
      ADD_FAILURE() << name << " did not throw";
    } catch (const std::runtime_error& e) {
      const std::string what = e.what();
      if (!cuda_built())
        EXPECT_NE(what.find(std::string("kernels::") + name + ": the CUDA backend is not built into this binary"),
                  std::string::npos) << what;
      else
        EXPECT_TRUE(what.rfind(std::string("kernels::") + name + ": CUDA: ", 0) == 0 ||
                    what.rfind(std::string("kernels::") + name + ": cuBLAS: ", 0) == 0)
            << name << ": " << what;
    }
  };
  expect_error([&] { add_inplace(cuda, x, x, 4); }, "add_inplace");
  double acc = 0;
  expect_error([&] { sum(cuda, &acc, x, 4); }, "sum");
  expect_error([&] { gemm(cuda, false, false, 2, 2, 1, 1.0f, x, 1, x, 2, 0.0f, x, 2); }, "gemm");
  expect_error([&] { attention_decode(cuda, x, x, x, x, x, 1, 1, 4); }, "attention_decode");
  expect_error([&] { (void)alloc_bytes(cuda, 16); }, "alloc_bytes");
  expect_error([&] { (void)event_create(cuda); }, "event_create");
  EXPECT_EQ(x[3], 4.0f);  // nothing ran
}

// Without a usable device, opening one is one clear error with the driver's reason.
TEST(Device, OpeningACudaDeviceWhereThereIsNoneSaysWhy) {
  std::string why;
  if (cuda_device_count(&why) > 0) GTEST_SKIP() << "this machine has a CUDA device";
  EXPECT_FALSE(why.empty());
  try {
    (void)open_device(Backend::CUDA, 0);
    ADD_FAILURE() << "open_device(CUDA) did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "no usable CUDA device: " + why);
  }
  EXPECT_EQ(open_device(Backend::CPU).backend, Backend::CPU);
}

}  // namespace
}  // namespace attnres::kernels
