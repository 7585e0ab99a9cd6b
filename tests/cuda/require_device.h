// The first CUDA device, opened into `dev`, or a GoogleTest skip naming why
// there is none (use at the top of a test body). For tests of several ranks:
// the device of each, or why there is none.
#pragma once
#include <gtest/gtest.h>

#include <string>

#include "kernels/device.h"

// The device of rank `rank` of `ranks` on this machine: one each, or shared
// under ATTNRES_SHARE_GPU=1 (docs/CUDA.md); -1 and `why` when there is none.
inline int test_rank_device(int rank, int ranks, std::string* why) {
  const int n = attnres::kernels::cuda_device_count(why);
  return n == 0 ? -1 : attnres::kernels::device_of_rank(rank, ranks, n, attnres::kernels::share_gpu(), why);
}

#define REQUIRE_CUDA_DEVICE(dev)                                   \
  std::string no_device_;                                          \
  if (attnres::kernels::cuda_device_count(&no_device_) == 0)       \
    GTEST_SKIP() << "no CUDA device: " << no_device_;              \
  attnres::kernels::Device dev = attnres::kernels::open_device(attnres::kernels::Backend::CUDA, 0)
