// The tensor-parallel group's collectives for models/ (models/tensor_collectives.h),
// with the bytes each rank puts on the wire counted. parallel/mpi_communicator
// implements it over MPI, parallel/cuda/nccl_communicator.cpp over NCCL.
//
// Counted bytes are those of the ring algorithms (what NCCL runs, and what an
// α-β model charges): per rank, an all-reduce of n floats sends
// 2(p−1)/p · 4n bytes, and an all-gather or reduce-scatter of n floats per
// rank sends (p−1) · 4n. MPI may pick another algorithm on the wire; the
// count is the model's, and tests compare it with the analytic one.
#pragma once
#include <cstddef>

#include <vector>

#include "models/chunk.h"
#include "models/tensor_collectives.h"
#include "parallel/partition.h"

namespace attnres {

class TensorGroup : public TensorCollectives {
 public:
  double bytes_sent() const { return bytes_; }  // since construction, ring model

 protected:
  double bytes_ = 0;
};

// Ring-model bytes one rank sends (see above).
double ring_allreduce_bytes(size_t floats, int ranks);
// An all-gather of elements of element_bytes each; also a reduce-scatter (of floats).
double ring_allgather_bytes(size_t elements_per_rank, int ranks, size_t element_bytes = 4);

// The bytes one tp rank sends in its chunks' collectives during one training
// step of M microbatches (ring model), from the model alone: per microbatch
// the forward and backward of each chunk (the collectives of
// models/chunk_tp.cpp and models/chunk_head.cpp), then the sum of the
// replicated tensors' gradients under sequence parallelism. The runtime's
// count must equal it.
double tp_step_bytes(const ModelConfig& m, const std::vector<ChunkRange>& chunks, int M, int micro_batch,
                     const TensorParallel& tp);

}  // namespace attnres
