#include "models/chunk_parts.h"

#include "kernels/ops.h"

namespace attnres {

namespace k = kernels;

// gate and up column-parallel on the full rows xn, SwiGLU, then the
// row-parallel down.
void mlp_sublayer_forward(const Chunk& c, const SublayerWeights& p, SublayerActs& s, float* y) {
  const ChunkDims& x = c.dims;
  const int N = x.N, d = x.d;
  matmul_forward(c, s.gate, s.xn, s.xn_h, p.gate, N, d, x.Fl);
  matmul_forward(c, s.up, s.xn, s.xn_h, p.up, N, d, x.Fl);
  k::swiglu_forward(c.dev, s.act, s.gate, s.up, size_t(N) * x.Fl);
  keep_bf16(c, s.act_h, s.act, size_t(N) * x.Fl);
  matmul_forward(c, y, s.act, s.act_h, p.down, N, x.Fl, d);
}

void mlp_sublayer_backward(const Chunk& c, const SublayerWeights& p, SublayerActs& s) {
  const BackwardScratch& t = c.t;
  const ChunkDims& x = c.dims;
  const int N = x.N, d = x.d;
  const size_t NF = size_t(N) * x.Fl;
  matmul_backward_input(c, t.dact, s.dy, s.dy_h, p.down, N, x.Fl, d, false);
  k::swiglu_backward(c.dev, s.dgate, s.dup, t.dact, s.gate, s.up, NF);
  keep_bf16(c, s.dgate_h, s.dgate, NF), keep_bf16(c, s.dup_h, s.dup, NF);
  matmul_backward_input(c, t.dxn, s.dgate, s.dgate_h, p.gate, N, d, x.Fl, false);
  matmul_backward_input(c, t.dxn, s.dup, s.dup_h, p.up, N, d, x.Fl, true);
}

void mlp_sublayer_backward_weight(const Chunk& c, const SublayerTensors& g, const SublayerActs& s) {
  const ChunkDims& x = c.dims;
  const int N = x.N, d = x.d;
  matmul_backward_weight(c, g.down, s.dy, s.dy_h, s.act, s.act_h, N, x.Fl, d);
  matmul_backward_weight(c, g.gate, s.dgate, s.dgate_h, s.xn, s.xn_h, N, d, x.Fl);
  matmul_backward_weight(c, g.up, s.dup, s.dup_h, s.xn, s.xn_h, N, d, x.Fl);
}

}  // namespace attnres
