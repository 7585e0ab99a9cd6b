// CPU device: aligned host memory; threads shared by OpenMP and OpenBLAS.
#include <cblas.h>
#include <omp.h>

#include <cassert>
#include <cstdlib>
#include <cstring>
#include <new>

#include "kernels/device.h"

namespace attnres::kernels {

float* device_alloc_floats(const Device& dev, size_t n) {
  assert(dev.backend == Backend::CPU);
  if (n == 0) return nullptr;
  // 64-byte alignment for AVX-512 loads; aligned_alloc needs a size multiple.
  size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  return static_cast<float*>(p);
}

void device_free(const Device& dev, void* p) {
  assert(dev.backend == Backend::CPU);
  std::free(p);
}

void device_copy(const Device& dev, float* dst, const float* src, size_t n) {
  assert(dev.backend == Backend::CPU);
  if (n) std::memcpy(dst, src, n * sizeof(float));
}

void device_zero(const Device& dev, float* p, size_t n) {
  assert(dev.backend == Backend::CPU);
  if (n) std::memset(p, 0, n * sizeof(float));
}

void set_num_threads(int n) {
  assert(n >= 0);
  if (n == 0) n = omp_get_num_procs();
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int get_num_threads() { return omp_get_max_threads(); }

}  // namespace attnres::kernels
