#include "kernels/cuda_debug.h"

#include "kernels/env_flag.h"

namespace attnres::kernels {

bool cuda_debug() {
  static const bool on = env_flag("ATTNRES_CUDA_DEBUG");
  return on;
}

std::string cuda_error_message(const char* call, const char* what, bool debug) {
  std::string m = std::string("CUDA: ") + call + ": " + what;
  if (!debug) m += " (it may be an earlier op's fault: ATTNRES_CUDA_DEBUG=1 names the op)";
  return m;
}

}  // namespace attnres::kernels
