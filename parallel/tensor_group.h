// The tensor-parallel group's collectives for models/ (models/tensor_collectives.h)
// over MPI on host memory, with the bytes each rank puts on the wire counted.
//
// Counted bytes are those of the ring algorithms (what NCCL runs, and what
// an α-β model charges): per rank, an all-reduce of n floats sends
// 2(p−1)/p · 4n bytes, and an all-gather or reduce-scatter of n floats per
// rank sends (p−1) · 4n. MPI may pick another algorithm on the wire; the
// count is the model's, and tests compare it with the analytic one.
#pragma once
#include <mpi.h>

#include "models/tensor_collectives.h"

namespace attnres {

class MpiTensorGroup final : public TensorCollectives {
 public:
  explicit MpiTensorGroup(MPI_Comm comm);  // not owned
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void allreduce_sum(float* x, size_t n) override;
  void allreduce_max(float* x, size_t n) override;
  void allgather(float* out, const float* in, size_t n) override;
  void reduce_scatter_sum(float* out, const float* in, size_t n) override;

  double bytes_sent() const { return bytes_; }  // since construction, ring model
  void reset_bytes() { bytes_ = 0; }

 private:
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  double bytes_ = 0;
};

// Ring-model bytes one rank sends (see above), for the analytic counts.
double ring_allreduce_bytes(size_t floats, int ranks);
double ring_allgather_bytes(size_t floats_per_rank, int ranks);  // = reduce-scatter

}  // namespace attnres
