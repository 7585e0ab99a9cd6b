#include "kernels/device_overhead.h"

#include <algorithm>
#include <stdexcept>

#include "kernels/grid_ops.h"
#ifdef ATTNRES_WITH_CUDA
#include "kernels/cuda/memory_cuda.h"
#endif

namespace attnres::kernels {

DeviceOverhead device_overhead(const DeviceShape& dev, int max_sources, int collective_comms) {
  DeviceOverhead o;
  o.context = kContextGrowthBytes;
  o.gemm_workspace = kLtWorkspaceBytes;
  o.nccl = uint64_t(collective_comms) * kNcclChannels * 2 * kNcclConnectionBytes;
  // The device keeps the largest frame of any kernel launched so far for
  // every thread it can hold.
  const size_t frame = max_sources > 0 ? grid::attnres_stack_bytes(max_sources) : 0;
  o.kernel_stacks = uint64_t(std::max(frame, dev.stack_limit) - dev.stack_limit) * uint64_t(dev.sms) *
                    uint64_t(dev.threads_per_sm);
  return o;
}

DeviceShape device_shape([[maybe_unused]] const Device& dev) {
  if (dev.backend != Backend::CUDA) throw std::logic_error("kernels::device_shape: not a CUDA device");
#ifdef ATTNRES_WITH_CUDA
  return cuda::device_shape(dev);
#else
  throw std::logic_error("kernels::device_shape: the CUDA backend is not built into this binary");
#endif
}

}  // namespace attnres::kernels
