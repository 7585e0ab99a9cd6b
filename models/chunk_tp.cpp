#include "models/chunk_parts.h"

#include "kernels/ops.h"

namespace attnres {

namespace k = kernels;

// The tensor-parallel collectives of a chunk's forward and backward (DESIGN §6).
float* sum_partials(const Chunk& c, float* partial, float* res) {
  const ChunkDims& x = c.dims;
  if (!c.tp.coll) return partial;
  if (!c.tp.sequence_parallel) {
    c.tp.coll->allreduce_sum(partial, size_t(x.N) * x.d);
    return partial;
  }
  c.tp.coll->reduce_scatter_sum(res, partial, size_t(x.Nr) * x.d);
  return res;
}
float* partial_target(const Chunk& c, float* res) {
  return c.tp.sequence_parallel ? c.t.full : res;
}
void gather_rows(const Chunk& c, float* full, const float* res) {
  const ChunkDims& x = c.dims;
  if (c.tp.sequence_parallel) {
    c.tp.coll->allgather(full, res, size_t(x.Nr) * x.d);
  } else if (full != res) {
    k::copy(c.dev, full, res, size_t(x.N) * x.d, k::CopyKind::DeviceToDevice);
  }
}
// The full rows a GEMM reads (x, or its bf16 twin x_h in a bf16 run) from
// residual rows `res`: in bf16 under sequence parallelism the rows are made
// bf16 first and gathered in bf16, half the bytes.
static void gather_operand(const Chunk& c, float* x, k::bf16* x_h, const float* res) {
  const ChunkDims& d = c.dims;
  if (x_h && c.tp.sequence_parallel) {
    k::convert(c.dev, c.t.local_h, res, size_t(d.Nr) * d.d);
    c.tp.coll->allgather(x_h, c.t.local_h, size_t(d.Nr) * d.d);
  } else if (x_h) {
    k::convert(c.dev, x_h, res, size_t(d.N) * d.d);
  } else {
    gather_rows(c, x, res);
  }
}
void gather_dy(const Chunk& c, SublayerActs& s, const float* dstream) { gather_operand(c, s.dy, s.dy_h, dstream); }
// Where a norm of residual rows goes before gather_operand makes them the
// full rows `xn` the next matmuls read.
static float* norm_target(const Chunk& c, float* xn) { return c.tp.sequence_parallel ? c.t.local : xn; }
void norm_to_full(const Chunk& c, float* xn, k::bf16* xn_h, float* rstd, const float* x, const float* g) {
  const ChunkDims& d = c.dims;
  float* out = norm_target(c, xn);
  k::rmsnorm_forward(c.dev, out, rstd, x, g, d.Nr, d.d, c.cfg.norm_eps);
  gather_operand(c, xn, xn_h, out);
}
void merge_norm_to_full(const Chunk& c, float* xn, k::bf16* xn_h, float* rstd, float* h, float* lse, const float* p,
                        const float* p_rstd, const float* w, const float* g, const float* norm) {
  const ChunkDims& d = c.dims;
  float* out = norm_target(c, xn);
  k::attnres_merge_partial(c.dev, h, lse, p, p_rstd, w, g, d.Nr, d.d, out, rstd, norm, c.cfg.norm_eps);
  gather_operand(c, xn, xn_h, out);
}

}  // namespace attnres
