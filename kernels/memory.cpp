// Dispatch of kernels/memory.h to the backends built into this binary, and the
// per-device ledger of allocated bytes.
#include "kernels/memory.h"

#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>

#include "kernels/cpu/memory_cpu.h"
#include "kernels/dispatch.h"
#ifdef ATTNRES_WITH_CUDA
#include "kernels/cuda/memory_cuda.h"
#endif

namespace attnres::kernels {

namespace {

// Bytes of every live allocation, so free_bytes can subtract what alloc_bytes added.
struct Ledger {
  std::mutex mu;
  std::map<std::pair<Backend, int>, size_t> total;  // per (backend, ordinal)
  std::unordered_map<const void*, size_t> sizes;
};
Ledger& ledger() {
  static Ledger l;
  return l;
}

}  // namespace

void* alloc_bytes(const Device& dev, size_t bytes) {
  void* p = nullptr;
  switch (dev.backend) {
    case Backend::CPU: p = cpu::alloc_bytes(bytes); break;
    case Backend::CUDA:
#ifdef ATTNRES_WITH_CUDA
      p = ATTNRES_CUDA_CALL("alloc_bytes", alloc_bytes(dev, bytes));
      break;
#else
      not_built("alloc_bytes");
#endif
  }
  if (p) {
    Ledger& l = ledger();
    std::lock_guard<std::mutex> lock(l.mu);
    l.sizes[p] = bytes;
    l.total[{dev.backend, dev.ordinal}] += bytes;
  }
  return p;
}

void free_bytes(const Device& dev, void* p) {
  if (!p) return;
  {
    Ledger& l = ledger();
    std::lock_guard<std::mutex> lock(l.mu);
    const auto it = l.sizes.find(p);
    if (it == l.sizes.end()) throw std::logic_error("kernels::free_bytes: pointer was not allocated by alloc_bytes");
    l.total[{dev.backend, dev.ordinal}] -= it->second;
    l.sizes.erase(it);
  }
  switch (dev.backend) {
    case Backend::CPU: return cpu::free_bytes(p);
    case Backend::CUDA: ATTNRES_ON_CUDA("free_bytes", free_bytes(dev, p));
  }
}

size_t allocated_bytes(const Device& dev) {
  Ledger& l = ledger();
  std::lock_guard<std::mutex> lock(l.mu);
  const auto it = l.total.find({dev.backend, dev.ordinal});
  return it == l.total.end() ? 0 : it->second;
}

size_t device_free_bytes(const Device& dev) {
  switch (dev.backend) {
    case Backend::CPU: throw std::logic_error("kernels::device_free_bytes: the CPU's memory is host memory");
    case Backend::CUDA: ATTNRES_ON_CUDA("device_free_bytes", device_free_bytes(dev));
  }
  return 0;
}

void* alloc_pinned(const Device& dev, size_t bytes) {
  switch (dev.backend) {
    case Backend::CPU: return cpu::alloc_bytes(bytes);
    case Backend::CUDA: ATTNRES_ON_CUDA("alloc_pinned", alloc_pinned(bytes));
  }
  return nullptr;
}

void free_pinned(const Device& dev, void* p) {
  switch (dev.backend) {
    case Backend::CPU: return cpu::free_bytes(p);
    case Backend::CUDA: ATTNRES_ON_CUDA("free_pinned", free_pinned(p));
  }
}

void copy_bytes(const Device& dev, void* dst, const void* src, size_t bytes, [[maybe_unused]] CopyKind kind) {
  switch (dev.backend) {
    case Backend::CPU: return cpu::copy_bytes(dst, src, bytes);  // one address space
    case Backend::CUDA: ATTNRES_ON_CUDA("copy_bytes", copy_bytes(dev, dst, src, bytes, kind));
  }
}

void zero_bytes(const Device& dev, void* p, size_t bytes) {
  switch (dev.backend) {
    case Backend::CPU: return cpu::zero_bytes(p, bytes);
    case Backend::CUDA: ATTNRES_ON_CUDA("zero_bytes", zero_bytes(dev, p, bytes));
  }
}

void synchronize(const Device& dev) {
  switch (dev.backend) {
    case Backend::CPU: return;  // every CPU call is done when it returns
    case Backend::CUDA: ATTNRES_ON_CUDA("synchronize", synchronize(dev));
  }
}

Event event_create(const Device& dev) {
  switch (dev.backend) {
    case Backend::CPU: return Event{Backend::CPU, nullptr, 0.0};
    case Backend::CUDA: ATTNRES_ON_CUDA("event_create", event_create(dev));
  }
  return Event{};
}

void event_destroy(Event& e) noexcept {
  if (e.backend == Backend::CUDA) release_quietly("event_destroy", [&] { ATTNRES_ON_CUDA_HOST("event_destroy", event_destroy(e)); });
  e = Event{};
}

void event_record(Event& e, const Device& dev) {
  if (e.backend != dev.backend) throw std::logic_error("kernels::event_record: event and device backends differ");
  switch (dev.backend) {
    case Backend::CPU: e.host_ms = cpu::now_ms(); return;
    case Backend::CUDA: ATTNRES_ON_CUDA("event_record", event_record(e, dev));
  }
}

void event_synchronize(const Event& e) {
  switch (e.backend) {
    case Backend::CPU: return;  // recorded work is already done
    case Backend::CUDA: ATTNRES_ON_CUDA_HOST("event_synchronize", event_synchronize(e));
  }
}

bool event_done(const Event& e) {
  switch (e.backend) {
    case Backend::CPU: return true;  // recorded work is already done
    case Backend::CUDA: ATTNRES_ON_CUDA_HOST("event_done", event_done(e));
  }
  return true;
}

float event_elapsed_ms(const Event& start, const Event& end) {
  if (start.backend != end.backend) throw std::logic_error("kernels::event_elapsed_ms: events of different backends");
  switch (start.backend) {
    case Backend::CPU: return float(end.host_ms - start.host_ms);
    case Backend::CUDA: ATTNRES_ON_CUDA_HOST("event_elapsed_ms", event_elapsed_ms(start, end));
  }
  return 0;
}

void stream_wait_event(const Device& dev, const Event& e) {
  if (e.backend != dev.backend) throw std::logic_error("kernels::stream_wait_event: event and device backends differ");
  switch (dev.backend) {
    case Backend::CPU: return;  // one host thread: the event's work is done
    case Backend::CUDA: ATTNRES_ON_CUDA("stream_wait_event", stream_wait_event(dev, e));
  }
}

}  // namespace attnres::kernels
