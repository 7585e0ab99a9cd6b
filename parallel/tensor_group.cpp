#include "parallel/tensor_group.h"

namespace attnres {

double ring_allreduce_bytes(size_t floats, int ranks) {
  return 2.0 * double(ranks - 1) / double(ranks) * 4.0 * double(floats);
}

double ring_allgather_bytes(size_t elements_per_rank, int ranks, size_t element_bytes) {
  return double(ranks - 1) * double(element_bytes) * double(elements_per_rank);
}

double tp_step_bytes(const ModelConfig& m, const std::vector<ChunkRange>& chunks, int M, int micro_batch,
                     const TensorParallel& tp) {
  const int p = tp.tp.size;
  if (p == 1) return 0;
  const ChunkDims x = chunk_dims(m, micro_batch, tp);
  const size_t Nd = size_t(x.N) * x.d, Nrd = size_t(x.Nr) * x.d;
  // A row-parallel output summed into the residual rows, and full rows
  // gathered from them (nothing to gather without sequence parallelism):
  // the GEMM inputs xn and dy in bf16 in a bf16 run, the embedding's dx0 in fp32.
  const double sum_rows = tp.sequence_parallel ? ring_allgather_bytes(Nrd, p) : ring_allreduce_bytes(Nd, p);
  const double gather_fp32 = tp.sequence_parallel ? ring_allgather_bytes(Nrd, p) : 0.0;
  const double gather_rows = tp.sequence_parallel ? ring_allgather_bytes(Nrd, p, kernels::dtype_size(m.precision)) : 0.0;
  double per_mb = 0, replicated = 0;
  for (const ChunkRange& c : chunks) {
    if (c.has_embed) per_mb += sum_rows + gather_fp32;  // forward sum; backward gather of dx0
    // Each sublayer: forward gather xn, sum y; backward gather dy, sum dxn.
    per_mb += (c.last - c.first) * 2 * (gather_rows + sum_rows);
    if (c.has_head)  // gather xn, row max, (sum_exp, target logit); backward sum dxn
      per_mb += gather_rows + ring_allreduce_bytes(size_t(x.N), p) + ring_allreduce_bytes(2 * size_t(x.N), p) +
                sum_rows;
    if (tp.sequence_parallel)
      for (const TensorSpec& t : make_param_layout(m, c.first, c.last, tp.tp).tensors)
        if (!t.sharded()) replicated += ring_allreduce_bytes(t.numel, p);
  }
  return M * per_mb + replicated;
}

}  // namespace attnres
