// The collectives a tensor-parallel chunk needs (DESIGN §6). models/ declares
// this interface and never calls MPI or NCCL; parallel/ implements it over
// the tensor group: MPI on host memory (parallel/tensor_group.h), NCCL on
// device memory, on the chunk's stream (parallel/cuda).
//
// Every call is collective: all ranks of the group call it in the same order
// with the same n. Buffers are device memory of the chunk's Device.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/dtype.h"

namespace attnres {

class TensorCollectives {
 public:
  virtual ~TensorCollectives() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // x[n] = Σ over ranks of x[n], in place.
  virtual void allreduce_sum(float* x, size_t n) = 0;
  // x[n] = max over ranks of x[n], in place.
  virtual void allreduce_max(float* x, size_t n) = 0;
  // out[size · n] = the ranks' in[n], concatenated in rank order. A bf16 run
  // gathers its GEMM inputs in bf16 (DESIGN §11); sums stay fp32.
  virtual void allgather(float* out, const float* in, size_t n) = 0;
  virtual void allgather(kernels::bf16* out, const kernels::bf16* in, size_t n) = 0;
  // out[n] = Σ over ranks of their in[rank · n, (rank + 1) · n).
  virtual void reduce_scatter_sum(float* out, const float* in, size_t n) = 0;
};

}  // namespace attnres
