#include "kernels/release.h"

#include <cstdio>

namespace attnres::kernels {

void report_release_failure(const char* what, const char* error) noexcept {
  std::fprintf(stderr, "attnres: %s failed (ignored, the first error is what matters): %s\n", what, error);
}

}  // namespace attnres::kernels
