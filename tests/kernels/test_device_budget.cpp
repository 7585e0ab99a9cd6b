// What the memory check counts beside the memory plan on a GPU
// (kernels/device_overhead.h).
#include <gtest/gtest.h>

#include "kernels/device_overhead.h"
#include "kernels/grid_ops.h"

namespace attnres::kernels {
namespace {

// The depth kernels' per-thread stack follows the source count: the
// forward's scores of two sites (2 x capacity floats) plus the rest of its
// frame, or the backward's frame if larger.
TEST(DeviceOverhead, StacksAreSizedBySourceCountNotTheMaximum) {
  EXPECT_EQ(grid::source_capacity(3), 16);
  EXPECT_EQ(grid::source_capacity(17), 64);
  EXPECT_EQ(grid::source_capacity(256), 256);
  EXPECT_EQ(grid::source_capacity(257), kMaxSources);
  EXPECT_EQ(grid::attnres_stack_bytes(9), grid::kBackwardFrame);
  EXPECT_EQ(grid::attnres_stack_bytes(65), 2 * 256 * sizeof(float) + grid::kForwardFrameRest);
  EXPECT_EQ(grid::attnres_stack_bytes(1025), 2 * 1025 * sizeof(float) + grid::kForwardFrameRest);
}

TEST(DeviceOverhead, CountsContextWorkspaceNcclAndStacks) {
  const DeviceShape h100{132, 2048, 1024};
  const uint64_t threads = 132 * 2048;
  const DeviceOverhead few = device_overhead(h100, 9, 2);  // 8 blocks, dp and tp collectives
  EXPECT_EQ(few.gemm_workspace, uint64_t(32) << 20);
  EXPECT_EQ(few.context, kContextGrowthBytes);
  EXPECT_EQ(few.nccl, 2 * kNcclChannels * 2 * kNcclConnectionBytes);
  EXPECT_EQ(few.kernel_stacks, threads * (grid::kBackwardFrame - 1024));
  EXPECT_EQ(few.total(), few.context + few.gemm_workspace + few.nccl + few.kernel_stacks);
  // At the 1025-source maximum the stacks alone take 2 GB more of an H100.
  const DeviceOverhead most = device_overhead(h100, 1025, 0);
  EXPECT_EQ(most.kernel_stacks, threads * (2 * 1025 * sizeof(float) + grid::kForwardFrameRest - 1024));
  EXPECT_GT(most.kernel_stacks, uint64_t(2'000'000'000));
  EXPECT_LT(few.kernel_stacks * 20, most.kernel_stacks);
  EXPECT_EQ(most.nccl, 0u);
  // Standard residuals launch no depth kernel; a larger stack limit covers a frame.
  EXPECT_EQ(device_overhead(h100, 0, 1).kernel_stacks, 0u);
  EXPECT_EQ(device_overhead({132, 2048, 4096}, 9, 0).kernel_stacks, 0u);
}

}  // namespace
}  // namespace attnres::kernels
