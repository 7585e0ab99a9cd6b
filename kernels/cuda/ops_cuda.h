// The CUDA backend of kernels/ops.h: the ops it has, with the signatures and
// contracts of ops.h, in namespace kernels::cuda beside kernels::cpu. Called
// only by the dispatch in kernels/ops.cpp; an op missing here throws there.
#pragma once
#include "kernels/device.h"

namespace attnres::kernels::cuda {

void gemm(const Device& dev, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
          const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc);

}  // namespace attnres::kernels::cuda
