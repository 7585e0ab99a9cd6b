#include "models/chunk_parts.h"

#include "kernels/ops.h"

namespace attnres {

namespace k = kernels;

// gate and up column-parallel on the full rows xn, SwiGLU, then the
// row-parallel down.
void mlp_sublayer_forward(const Chunk& c, const SublayerTensors& p, SublayerActs& s, float* y) {
  const ChunkDims& x = c.dims;
  const int N = x.N, d = x.d;
  k::linear_forward(c.dev, s.gate, s.xn, p.gate, N, d, x.Fl);
  k::linear_forward(c.dev, s.up, s.xn, p.up, N, d, x.Fl);
  k::swiglu_forward(c.dev, s.act, s.gate, s.up, size_t(N) * x.Fl);
  k::linear_forward(c.dev, y, s.act, p.down, N, x.Fl, d);
}

void mlp_sublayer_backward(const Chunk& c, const SublayerTensors& p, SublayerActs& s) {
  const BackwardScratch& t = c.t;
  const ChunkDims& x = c.dims;
  const int N = x.N, d = x.d;
  k::linear_backward(c.dev, t.dact, nullptr, s.dy, s.act, p.down, N, x.Fl, d, false);
  k::swiglu_backward(c.dev, s.dgate, s.dup, t.dact, s.gate, s.up, size_t(N) * x.Fl);
  k::linear_backward(c.dev, t.dxn, nullptr, s.dgate, s.xn, p.gate, N, d, x.Fl, false);
  k::linear_backward(c.dev, t.dxn, nullptr, s.dup, s.xn, p.up, N, d, x.Fl, true);
}

void mlp_sublayer_backward_weight(const Chunk& c, const SublayerTensors& g, const SublayerActs& s) {
  const ChunkDims& x = c.dims;
  const int N = x.N, d = x.d;
  k::linear_backward(c.dev, nullptr, g.down, s.dy, s.act, nullptr, N, x.Fl, d, false);
  k::linear_backward(c.dev, nullptr, g.gate, s.dgate, s.xn, nullptr, N, d, x.Fl, false);
  k::linear_backward(c.dev, nullptr, g.up, s.dup, s.xn, nullptr, N, d, x.Fl, false);
}

}  // namespace attnres
