// Locating faults on the CPU (docs/CUDA.md): the op-naming and debug
// synchronization every CUDA op runs through (kernels/cuda_debug.h), with a
// fake synchronization, and releases in destructors that never throw.
#include <gtest/gtest.h>

#include <functional>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda_debug.h"
#include "kernels/env_flag.h"
#include "kernels/memory.h"

namespace attnres::kernels {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(CudaDebug, DebugModeSynchronizesAfterTheOpAndNamesItInTheFault) {
  int syncs = 0;
  auto faulty = [&] {
    ++syncs;
    return std::string("CUDA: an illegal memory access was encountered");
  };
  EXPECT_THROW(run_op("kernels::rmsnorm_forward", true, [] { return 7; }, faulty), std::runtime_error);
  EXPECT_EQ(syncs, 1);
  const std::string e = error_of([&] { run_op("kernels::rmsnorm_forward", true, [] {}, faulty); });
  EXPECT_EQ(e.rfind("kernels::rmsnorm_forward: CUDA: an illegal memory access was encountered", 0), 0u) << e;
  EXPECT_NE(e.find("ATTNRES_CUDA_DEBUG"), std::string::npos) << e;
  // Off: the op's value comes back and the device is never waited for.
  syncs = 0;
  EXPECT_EQ(run_op("kernels::sum", false, [] { return 2.5; }, faulty), 2.5);
  EXPECT_EQ(syncs, 0);
  // A healthy device in debug mode: nothing thrown.
  EXPECT_EQ(error_of([] { run_op("kernels::sum", true, [] {}, [] { return std::string(); }); }), "");
}

TEST(CudaDebug, ErrorsOfTheCallNameTheOpLogicErrorsPassUnchanged) {
  const std::string e = error_of([] {
    run_op("kernels::copy_bytes", false, []() -> int { throw std::runtime_error("CUDA: cudaMemcpyAsync: bad"); },
           [] { return std::string(); });
  });
  EXPECT_EQ(e, "kernels::copy_bytes: CUDA: cudaMemcpyAsync: bad");
  EXPECT_THROW(run_op("kernels::attnres_block_forward", false, [] { throw std::invalid_argument("2000 sources"); },
                      [] { return std::string(); }),
               std::invalid_argument);
}

TEST(CudaDebug, CallErrorsSayHowToFindTheOpUnlessInDebugMode) {
  EXPECT_EQ(cuda_error_message("cudaMalloc", "out of memory", true), "CUDA: cudaMalloc: out of memory");
  const std::string hint = cuda_error_message("cudaMalloc", "out of memory", false);
  EXPECT_EQ(hint.rfind("CUDA: cudaMalloc: out of memory (", 0), 0u) << hint;
  EXPECT_NE(hint.find("ATTNRES_CUDA_DEBUG=1"), std::string::npos) << hint;
}

TEST(EnvFlag, OnlyZeroAndOneAreValues) {
  EXPECT_FALSE(parse_env_flag("ATTNRES_CUDA_DEBUG", nullptr));
  EXPECT_FALSE(parse_env_flag("ATTNRES_CUDA_DEBUG", ""));
  EXPECT_FALSE(parse_env_flag("ATTNRES_CUDA_DEBUG", "0"));
  EXPECT_TRUE(parse_env_flag("ATTNRES_CUDA_DEBUG", "1"));
  EXPECT_THROW(parse_env_flag("ATTNRES_SHARE_GPU", "yes"), std::invalid_argument);
}

// A buffer whose memory was freed behind its back: its release fails (the
// ledger no longer knows the pointer), as a release does after a sticky CUDA
// error. The destructor reports it and returns; throwing would terminate.
TEST(Release, ADestructorWhoseReleaseFailsReportsAndDoesNotThrow) {
  const Device dev;
  testing::internal::CaptureStderr();
  {
    DeviceBuffer<float> b(dev, 4);
    free_bytes(dev, b.data());
  }
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("freeing a device buffer failed"), std::string::npos) << err;
  EXPECT_NE(err.find("not allocated by alloc_bytes"), std::string::npos) << err;
  static_assert(std::is_nothrow_destructible_v<DeviceBuffer<float>>);
}

TEST(Release, ReleaseQuietlyReportsWhatFailed) {
  testing::internal::CaptureStderr();
  release_quietly("ncclCommDestroy", [] { throw std::runtime_error("NCCL: unhandled cuda error"); });
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("ncclCommDestroy failed"), std::string::npos) << err;
  EXPECT_NE(err.find("NCCL: unhandled cuda error"), std::string::npos) << err;
}

}  // namespace
}  // namespace attnres::kernels
