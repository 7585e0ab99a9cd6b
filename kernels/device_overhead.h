// Device memory a rank uses beside the buffers kernels::allocated_bytes
// counts (and the memory plan predicts), which the memory check adds to the
// plan (docs/CUDA.md, "Memory headroom"). The check reads the device's free
// memory once the device is open and the communicators are made: the CUDA
// context and the buffers of the NCCL edges (connected at set-up) are out of
// it by then. What comes later is counted here.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/device.h"

namespace attnres::kernels {

// cuBLASLt's workspace per device (kernels/cuda/gemm_cuda.cpp): what NVIDIA
// recommends for Hopper, so that its split-K and stream-K algorithms are not
// ruled out.
constexpr size_t kLtWorkspaceBytes = size_t(32) << 20;
// What the context loads after the check: kernels at their first launch
// (CUDA's lazy module loading) and cuBLAS's own workspace. An allowance,
// never measured on a device.
constexpr uint64_t kContextGrowthBytes = uint64_t(256) << 20;
// NCCL's buffers for one connection (one peer, one direction, one channel):
// its three protocols' default sizes in NCCL 2.28 (src/init.cc: LL 512 KiB,
// LL128 4.69 MiB, SIMPLE 4 MiB).
constexpr uint64_t kNcclConnectionBytes = 524288 + 4915200 + 4194304;
// Channels of a collective communicator: NCCL picks 2 to 32 by topology;
// 16 is assumed (NCCL_MAX_NCHANNELS caps it). Each connects a ring's two
// neighbours.
constexpr int kNcclChannels = 16;

// What the check needs to know of the device.
struct DeviceShape {
  int sms = 0;
  int threads_per_sm = 0;  // most resident threads per SM
  size_t stack_limit = 0;  // per-thread stack the context reserved (cudaLimitStackSize)
};

struct DeviceOverhead {
  uint64_t context = 0;         // kContextGrowthBytes
  uint64_t gemm_workspace = 0;  // kLtWorkspaceBytes
  uint64_t nccl = 0;            // the collective communicators' buffers, connected at their first call
  uint64_t kernel_stacks = 0;   // the depth kernels' frame beyond stack_limit, for every resident thread
  uint64_t total() const { return context + gemm_workspace + nccl + kernel_stacks; }
};

// `max_sources`: most AttnRes sources of a site (0 in standard mode: no depth
// kernels); `collective_comms`: NCCL communicators of two or more ranks that
// run collectives.
DeviceOverhead device_overhead(const DeviceShape& dev, int max_sources, int collective_comms);

// The shape of a CUDA device (cudaDeviceGetAttribute, cudaDeviceGetLimit).
DeviceShape device_shape(const Device& dev);

}  // namespace attnres::kernels
