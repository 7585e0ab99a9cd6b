#include "kernels/cuda/memory_cuda.h"

#include <cuda_runtime.h>

#include "kernels/cuda/cuda_check.h"

namespace attnres::kernels::cuda {

namespace {
cudaStream_t stream_of(const Device& dev) { return static_cast<cudaStream_t>(dev.stream); }
void select(const Device& dev) { check(cudaSetDevice(dev.ordinal), "cudaSetDevice"); }
}  // namespace

int device_count(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why) *why = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e);
    return 0;
  }
  if (n == 0 && why) *why = "cudaGetDeviceCount reports no device";
  return n;
}

Device open_device(int ordinal) {
  Device dev{Backend::CUDA, ordinal, nullptr};
  select(dev);
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  dev.stream = s;
  return dev;
}

void close_device(Device& dev) {
  if (dev.stream) check(cudaStreamDestroy(stream_of(dev)), "cudaStreamDestroy");
  dev.stream = nullptr;
}

void* alloc_bytes(const Device& dev, size_t bytes) {
  if (bytes == 0) return nullptr;
  select(dev);
  void* p = nullptr;
  check(cudaMalloc(&p, bytes), "cudaMalloc");
  return p;
}

void free_bytes(const Device& dev, void* p) {
  select(dev);
  check(cudaFree(p), "cudaFree");
}

size_t device_free_bytes(const Device& dev) {
  select(dev);
  size_t free = 0, total = 0;
  check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
  return free;
}

DeviceShape device_shape(const Device& dev) {
  select(dev);
  DeviceShape s;
  check(cudaDeviceGetAttribute(&s.sms, cudaDevAttrMultiProcessorCount, dev.ordinal), "cudaDeviceGetAttribute");
  check(cudaDeviceGetAttribute(&s.threads_per_sm, cudaDevAttrMaxThreadsPerMultiProcessor, dev.ordinal),
        "cudaDeviceGetAttribute");
  check(cudaDeviceGetLimit(&s.stack_limit, cudaLimitStackSize), "cudaDeviceGetLimit");
  return s;
}

void* alloc_pinned(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  check(cudaMallocHost(&p, bytes), "cudaMallocHost");
  return p;
}

void free_pinned(void* p) { check(cudaFreeHost(p), "cudaFreeHost"); }

void copy_bytes(const Device& dev, void* dst, const void* src, size_t bytes, CopyKind kind) {
  if (bytes == 0) return;
  const cudaMemcpyKind k = kind == CopyKind::HostToDevice   ? cudaMemcpyHostToDevice
                           : kind == CopyKind::DeviceToHost ? cudaMemcpyDeviceToHost
                                                            : cudaMemcpyDeviceToDevice;
  check(cudaMemcpyAsync(dst, src, bytes, k, stream_of(dev)), "cudaMemcpyAsync");
}

void zero_bytes(const Device& dev, void* p, size_t bytes) {
  if (bytes) check(cudaMemsetAsync(p, 0, bytes, stream_of(dev)), "cudaMemsetAsync");
}

void synchronize(const Device& dev) { check(cudaStreamSynchronize(stream_of(dev)), "cudaStreamSynchronize"); }

std::string stream_error(const Device& dev) {
  cudaError_t e = cudaStreamSynchronize(stream_of(dev));
  if (e == cudaSuccess) e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : std::string("CUDA: ") + cudaGetErrorString(e);
}

Event event_create(const Device& dev) {
  select(dev);
  cudaEvent_t e = nullptr;
  check(cudaEventCreate(&e), "cudaEventCreate");
  return Event{Backend::CUDA, e, 0.0};
}

void event_destroy(Event& e) {
  if (e.handle) check(cudaEventDestroy(static_cast<cudaEvent_t>(e.handle)), "cudaEventDestroy");
  e = Event{};
}

void event_record(Event& e, const Device& dev) {
  check(cudaEventRecord(static_cast<cudaEvent_t>(e.handle), stream_of(dev)), "cudaEventRecord");
}

void event_synchronize(const Event& e) {
  check(cudaEventSynchronize(static_cast<cudaEvent_t>(e.handle)), "cudaEventSynchronize");
}

bool event_done(const Event& e) {
  const cudaError_t r = cudaEventQuery(static_cast<cudaEvent_t>(e.handle));
  if (r == cudaErrorNotReady) {
    cudaGetLastError();  // not an error: clear it so the next check does not see it
    return false;
  }
  check(r, "cudaEventQuery");
  return true;
}

float event_elapsed_ms(const Event& start, const Event& end) {
  float ms = 0;
  check(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start.handle), static_cast<cudaEvent_t>(end.handle)),
        "cudaEventElapsedTime");
  return ms;
}

void stream_wait_event(const Device& dev, const Event& e) {
  check(cudaStreamWaitEvent(stream_of(dev), static_cast<cudaEvent_t>(e.handle), 0), "cudaStreamWaitEvent");
}

}  // namespace attnres::kernels::cuda
