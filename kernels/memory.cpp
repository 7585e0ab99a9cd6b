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

namespace attnres::kernels {

namespace {

[[noreturn]] void not_built(const char* what) {
  throw std::runtime_error(std::string("kernels::") + what + ": the CUDA backend is not built into this binary");
}

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
    case Backend::CUDA: not_built("alloc_bytes");
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
    case Backend::CUDA: not_built("free_bytes");
  }
}

size_t allocated_bytes(const Device& dev) {
  Ledger& l = ledger();
  std::lock_guard<std::mutex> lock(l.mu);
  const auto it = l.total.find({dev.backend, dev.ordinal});
  return it == l.total.end() ? 0 : it->second;
}

void* alloc_pinned(const Device& dev, size_t bytes) {
  switch (dev.backend) {
    case Backend::CPU: return cpu::alloc_bytes(bytes);
    case Backend::CUDA: break;
  }
  not_built("alloc_pinned");
}

void free_pinned(const Device& dev, void* p) {
  switch (dev.backend) {
    case Backend::CPU: return cpu::free_bytes(p);
    case Backend::CUDA: not_built("free_pinned");
  }
}

void copy_bytes(const Device& dev, void* dst, const void* src, size_t bytes, CopyKind) {
  switch (dev.backend) {
    case Backend::CPU: return cpu::copy_bytes(dst, src, bytes);  // one address space
    case Backend::CUDA: not_built("copy_bytes");
  }
}

void zero_bytes(const Device& dev, void* p, size_t bytes) {
  switch (dev.backend) {
    case Backend::CPU: return cpu::zero_bytes(p, bytes);
    case Backend::CUDA: not_built("zero_bytes");
  }
}

void synchronize(const Device& dev) {
  switch (dev.backend) {
    case Backend::CPU: return;  // every CPU call is done when it returns
    case Backend::CUDA: not_built("synchronize");
  }
}

Event event_create(const Device& dev) {
  switch (dev.backend) {
    case Backend::CPU: return Event{Backend::CPU, nullptr, 0.0};
    case Backend::CUDA: break;
  }
  not_built("event_create");
}

void event_destroy(Event& e) {
  switch (e.backend) {
    case Backend::CPU: e = Event{}; return;
    case Backend::CUDA: not_built("event_destroy");
  }
}

void event_record(Event& e, const Device& dev) {
  if (e.backend != dev.backend) throw std::logic_error("kernels::event_record: event and device backends differ");
  switch (dev.backend) {
    case Backend::CPU: e.host_ms = cpu::now_ms(); return;
    case Backend::CUDA: not_built("event_record");
  }
}

void event_synchronize(const Event& e) {
  switch (e.backend) {
    case Backend::CPU: return;  // recorded work is already done
    case Backend::CUDA: not_built("event_synchronize");
  }
}

float event_elapsed_ms(const Event& start, const Event& end) {
  if (start.backend != end.backend) throw std::logic_error("kernels::event_elapsed_ms: events of different backends");
  switch (start.backend) {
    case Backend::CPU: return float(end.host_ms - start.host_ms);
    case Backend::CUDA: break;
  }
  not_built("event_elapsed_ms");
}

void stream_wait_event(const Device& dev, const Event& e) {
  if (e.backend != dev.backend) throw std::logic_error("kernels::stream_wait_event: event and device backends differ");
  switch (dev.backend) {
    case Backend::CPU: return;  // one host thread: the event's work is done
    case Backend::CUDA: not_built("stream_wait_event");
  }
}

}  // namespace attnres::kernels
