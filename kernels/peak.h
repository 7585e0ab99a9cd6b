// Measured machine peak for MFU: the machine gives no vendor FLOP rate, so
// MFU is defined against the sgemm rate measured here.
#pragma once

namespace attnres::kernels {

// Times a few 1024x1024x1024 sgemm calls with `threads` threads (0 = all
// cores) after a warm-up and returns the median GFLOP/s. Restores the
// previous thread count.
double measure_sgemm_gflops(int threads);

}  // namespace attnres::kernels
