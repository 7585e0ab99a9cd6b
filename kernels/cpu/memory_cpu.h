// CPU backend of kernels/memory.h: device memory is 64-byte aligned host
// memory, copies are memcpy (done when the call returns), events are host
// timestamps.
#pragma once
#include <cstddef>

namespace attnres::kernels::cpu {

void* alloc_bytes(size_t bytes);
void free_bytes(void* p);
void copy_bytes(void* dst, const void* src, size_t bytes);
void zero_bytes(void* p, size_t bytes);
double now_ms();  // steady clock

}  // namespace attnres::kernels::cpu
