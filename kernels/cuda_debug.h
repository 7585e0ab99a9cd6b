// Locating a CUDA fault (docs/CUDA.md). A kernel's fault surfaces at some
// later CUDA call, in whichever op makes it; with ATTNRES_CUDA_DEBUG=1 the
// device is synchronized after every op, so the op named is the one that
// caused it. Plain C++: the CPU tests run it with a fake synchronization.
#pragma once
#include <stdexcept>
#include <string>
#include <type_traits>

namespace attnres::kernels {

// ATTNRES_CUDA_DEBUG, read once per process.
bool cuda_debug();

// The message of a failed CUDA call. Without debug mode it says how to find
// the op, since the error may be an earlier kernel's.
std::string cuda_error_message(const char* call, const char* what, bool debug);

// In debug mode: `sync()` waits for the op and returns the error found
// ("CUDA: ...", "NCCL: ..."), or an empty string; an error is thrown.
template <class Sync>
void check_after_op(bool debug, Sync sync) {
  if (!debug) return;
  const std::string err = sync();
  if (!err.empty()) throw std::runtime_error(err + " (ATTNRES_CUDA_DEBUG: found right after this op)");
}

// Runs `call`, the backend's half of op `op` ("kernels::sum"), then
// check_after_op. A runtime error from either comes out as "<op>: <what>".
template <class Call, class Sync>
auto run_op(const char* op, bool debug, Call call, Sync sync) -> decltype(call()) {
  try {
    if constexpr (std::is_void_v<decltype(call())>) {
      call();
      check_after_op(debug, sync);
    } else {
      auto r = call();
      check_after_op(debug, sync);
      return r;
    }
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(std::string(op) + ": " + e.what());
  }
}

}  // namespace attnres::kernels
