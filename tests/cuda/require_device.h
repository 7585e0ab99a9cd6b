// The first CUDA device, opened into `dev`, or a GoogleTest skip naming why
// there is none (use at the top of a test body).
#pragma once
#include <gtest/gtest.h>

#include <string>

#include "kernels/device.h"

#define REQUIRE_CUDA_DEVICE(dev)                                   \
  std::string no_device_;                                          \
  if (attnres::kernels::cuda_device_count(&no_device_) == 0)       \
    GTEST_SKIP() << "no CUDA device: " << no_device_;              \
  attnres::kernels::Device dev = attnres::kernels::open_device(attnres::kernels::Backend::CUDA, 0)
