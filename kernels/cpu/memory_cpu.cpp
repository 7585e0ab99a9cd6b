#include "kernels/cpu/memory_cpu.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>

namespace attnres::kernels::cpu {

void* alloc_bytes(size_t bytes) {
  if (bytes == 0) return nullptr;
  // 64-byte alignment for AVX-512 loads; aligned_alloc needs a size multiple.
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!p) throw std::bad_alloc();
  return p;
}

void free_bytes(void* p) { std::free(p); }

void copy_bytes(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}

void zero_bytes(void* p, size_t bytes) {
  if (bytes) std::memset(p, 0, bytes);
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace attnres::kernels::cpu
