// Device memory, copies and events: the only way code outside kernels/ reaches
// device memory. Every call dispatches on Device::backend (kernels/memory.cpp);
// the CPU backend (kernels/cpu/memory_cpu.h) uses aligned host memory, copies
// synchronously and timestamps events on the host.
//
// Copies are asynchronous on the device's stream: a host buffer given to a copy
// must stay alive, and a host destination must not be read, until
// synchronize(dev) returns.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "kernels/device.h"
#include "kernels/dtype.h"
#include "kernels/release.h"

namespace attnres::kernels {

// ---- raw device memory -----------------------------------------------------
// 64-byte aligned; 0 bytes gives nullptr. free_bytes(dev, nullptr) is a no-op.
void* alloc_bytes(const Device& dev, size_t bytes);
void free_bytes(const Device& dev, void* p);
// Bytes currently allocated on this device by alloc_bytes (as requested, not
// rounded): what the memory plan predicts.
size_t allocated_bytes(const Device& dev);

// Memory a CUDA device can still allocate (cudaMemGetInfo). The CPU backend
// allocates host memory, which the runtime measures itself
// (runtime/host_memory.h): calling this with a CPU device is a logic error.
size_t device_free_bytes(const Device& dev);

// Host memory the device can copy from/to asynchronously (page-locked on CUDA,
// plain host memory on CPU). Not counted by allocated_bytes.
void* alloc_pinned(const Device& dev, size_t bytes);
void free_pinned(const Device& dev, void* p);

// ---- copies and fills, asynchronous on dev.stream ----------------------------
enum class CopyKind { HostToDevice, DeviceToHost, DeviceToDevice };
void copy_bytes(const Device& dev, void* dst, const void* src, size_t bytes, CopyKind kind);
void zero_bytes(const Device& dev, void* p, size_t bytes);
// Blocks the host until everything issued on dev.stream is done.
void synchronize(const Device& dev);

template <class T>
void copy(const Device& dev, T* dst, const T* src, size_t n, CopyKind kind) {
  copy_bytes(dev, dst, src, n * sizeof(T), kind);
}
template <class T>
void zero(const Device& dev, T* p, size_t n) {
  zero_bytes(dev, p, n * sizeof(T));
}
// n elements of device memory as a host vector (copies, then synchronizes).
template <class T>
std::vector<T> to_host(const Device& dev, const T* src, size_t n) {
  std::vector<T> out(n);
  copy(dev, out.data(), src, n, CopyKind::DeviceToHost);
  synchronize(dev);
  return out;
}
// Host values into device memory (copies, then synchronizes so `src` may go).
template <class T>
void from_host(const Device& dev, T* dst, const T* src, size_t n) {
  copy(dev, dst, src, n, CopyKind::HostToDevice);
  synchronize(dev);
}

// ---- events ------------------------------------------------------------------
// A point in a device stream. On CPU, recording takes a host timestamp.
struct Event {
  Backend backend = Backend::CPU;
  void* handle = nullptr;  // cudaEvent_t on CUDA
  double host_ms = 0.0;    // CPU: steady-clock time of the last record
};
Event event_create(const Device& dev);
// Never throws (destructors call it): a failure goes to stderr (kernels/release.h).
void event_destroy(Event& e) noexcept;
void event_record(Event& e, const Device& dev);  // on dev.stream
void event_synchronize(const Event& e);          // host waits for the event
bool event_done(const Event& e);                 // whether the event has happened; never waits
// Milliseconds between two recorded, completed events.
float event_elapsed_ms(const Event& start, const Event& end);
// Work issued on dev.stream after this call waits for the event.
void stream_wait_event(const Device& dev, const Event& e);

// ---- typed owning buffers -------------------------------------------------------
// n elements of T in device memory of one device (DeviceBuffer), or in host
// memory it copies to and from asynchronously (PinnedBuffer: alloc_pinned);
// move-only, freed on destruction (which never throws: kernels/release.h).
enum class Memory { Device, Pinned };
template <class T, Memory where>
class Buffer {
 public:
  static constexpr DType dtype = dtype_of<T>();  // only the element types above
  static_assert(dtype_size(dtype) == sizeof(T));

  Buffer() = default;
  Buffer(const Device& dev, size_t n) : dev_(dev), n_(n), p_(static_cast<T*>(allocate(dev, n * sizeof(T)))) {}
  ~Buffer() { release(); }
  Buffer(Buffer&& o) noexcept : dev_(o.dev_), n_(std::exchange(o.n_, 0)), p_(std::exchange(o.p_, nullptr)) {}
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      dev_ = o.dev_;
      n_ = std::exchange(o.n_, 0);
      p_ = std::exchange(o.p_, nullptr);
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  T* data() { return p_; }
  const T* data() const { return p_; }
  size_t size() const { return n_; }
  const Device& device() const { return dev_; }
  void reset() {
    if (where == Memory::Device) free_bytes(dev_, p_);
    else free_pinned(dev_, p_);
    p_ = nullptr;
    n_ = 0;
  }

 private:
  void release() noexcept {
    release_quietly(where == Memory::Device ? "freeing a device buffer" : "freeing a pinned buffer", [this] { reset(); });
  }
  static void* allocate(const Device& dev, size_t bytes) {
    return where == Memory::Device ? alloc_bytes(dev, bytes) : alloc_pinned(dev, bytes);
  }
  Device dev_;
  size_t n_ = 0;
  T* p_ = nullptr;
};
template <class T>
using DeviceBuffer = Buffer<T, Memory::Device>;
template <class T>
using PinnedBuffer = Buffer<T, Memory::Pinned>;

}  // namespace attnres::kernels
