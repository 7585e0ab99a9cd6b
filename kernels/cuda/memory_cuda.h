// CUDA backend of kernels/memory.h and of device selection (kernels/device.h):
// cudaMalloc'd device memory, page-locked host memory, copies and fills
// asynchronous on the device's stream, CUDA events. Called only by the
// dispatch in kernels/memory.cpp and kernels/device_select.cpp.
#pragma once
#include <cstddef>
#include <string>

#include "kernels/device.h"
#include "kernels/device_overhead.h"
#include "kernels/memory.h"

namespace attnres::kernels::cuda {

int device_count(std::string* why);
Device open_device(int ordinal);  // selects it and creates its stream
void close_device(Device& dev);

void* alloc_bytes(const Device& dev, size_t bytes);
void free_bytes(const Device& dev, void* p);
size_t device_free_bytes(const Device& dev);
DeviceShape device_shape(const Device& dev);
void* alloc_pinned(size_t bytes);
void free_pinned(void* p);
void copy_bytes(const Device& dev, void* dst, const void* src, size_t bytes, CopyKind kind);
void zero_bytes(const Device& dev, void* p, size_t bytes);
void synchronize(const Device& dev);
// Waits for the device's stream; the error found (sticky, or the last
// launch's), or empty. ATTNRES_CUDA_DEBUG's check after every op. Only the
// op's stream: a communication stream may hold a receive posted ahead,
// which finishes only when the peer gets further (docs/CUDA.md).
std::string stream_error(const Device& dev);

Event event_create(const Device& dev);
void event_destroy(Event& e);
void event_record(Event& e, const Device& dev);
void event_synchronize(const Event& e);
bool event_done(const Event& e);
float event_elapsed_ms(const Event& start, const Event& end);
void stream_wait_event(const Device& dev, const Event& e);

}  // namespace attnres::kernels::cuda
