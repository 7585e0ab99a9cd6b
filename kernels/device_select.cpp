#include <stdexcept>
#include <string>

#include "kernels/device.h"
#include "kernels/env_flag.h"
#include "kernels/release.h"
#ifdef ATTNRES_WITH_CUDA
#include "kernels/cuda/memory_cuda.h"
#endif

namespace attnres::kernels {

bool cuda_built() {
#ifdef ATTNRES_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count(std::string* why) {
#ifdef ATTNRES_WITH_CUDA
  return cuda::device_count(why);
#else
  if (why) *why = "this binary was built without the CUDA backend (nvcc was not found, or ATTNRES_CUDA=OFF)";
  return 0;
#endif
}

bool share_gpu() {
  static const bool on = env_flag("ATTNRES_SHARE_GPU");
  return on;
}

int device_of_rank(int node_rank, int node_ranks, int devices, bool share, std::string* why) {
  if (devices > 0 && (share || node_ranks <= devices)) return share ? node_rank % devices : node_rank;
  if (why)
    *why = "this node has " + std::to_string(devices) + " CUDA device(s) for its " + std::to_string(node_ranks) +
           " ranks; run one rank per GPU, or set ATTNRES_SHARE_GPU=1 to share them (docs/CUDA.md)";
  return -1;
}

Device open_device(Backend backend, int ordinal) {
  if (backend == Backend::CPU) return Device{};
  std::string why;
  const int n = cuda_device_count(&why);
  if (n == 0) throw std::runtime_error("no usable CUDA device: " + why);
  if (ordinal < 0 || ordinal >= n)
    throw std::runtime_error("CUDA device " + std::to_string(ordinal) + " does not exist: this node has " +
                             std::to_string(n));
#ifdef ATTNRES_WITH_CUDA
  return cuda::open_device(ordinal);
#else
  return Device{};  // not reached: no devices without the backend
#endif
}

void close_device([[maybe_unused]] Device& dev) noexcept {
#ifdef ATTNRES_WITH_CUDA
  if (dev.backend == Backend::CUDA) release_quietly("closing the CUDA device's stream", [&] { cuda::close_device(dev); });
#endif
}

}  // namespace attnres::kernels
