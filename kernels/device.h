// Device and stream handle passed to every kernel, plus device memory.
// The CPU backend ignores the stream; a CUDA backend carries a cudaStream_t.
#pragma once
#include <cstddef>

namespace attnres::kernels {

enum class Backend { CPU, CUDA };

struct Device {
  Backend backend = Backend::CPU;
  void* stream = nullptr;  // cudaStream_t on CUDA, unused on CPU
};

// Device memory. On CPU these are aligned host allocations.
float* device_alloc_floats(const Device& dev, size_t n);
void device_free(const Device& dev, void* p);
void device_copy(const Device& dev, float* dst, const float* src, size_t n);
void device_zero(const Device& dev, float* p, size_t n);

// Sets the worker threads of both OpenMP and OpenBLAS (train.threads).
void set_num_threads(int n);
int get_num_threads();

}  // namespace attnres::kernels
