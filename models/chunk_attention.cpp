#include "models/chunk_parts.h"

#include "kernels/ops.h"

namespace attnres {

namespace k = kernels;

// q, k, v column-parallel on the full rows xn, RoPE on q and k, causal
// attention over this rank's Hl heads, then the row-parallel o.
void attention_sublayer_forward(const Chunk& c, const SublayerTensors& p, SublayerActs& s, float* y) {
  const ModelConfig& m = c.cfg;
  const ChunkDims& x = c.dims;
  const int N = x.N, d = x.d;
  const float *cos_t = c.cos, *sin_t = c.sin;
  k::linear_forward(c.dev, s.q, s.xn, p.q, N, d, x.dl);
  k::linear_forward(c.dev, s.k, s.xn, p.k, N, d, x.dl);
  k::linear_forward(c.dev, s.v, s.xn, p.v, N, d, x.dl);
  k::rope_forward(c.dev, s.q, cos_t, sin_t, c.batch, m.seq_len, x.Hl, m.head_dim());
  k::rope_forward(c.dev, s.k, cos_t, sin_t, c.batch, m.seq_len, x.Hl, m.head_dim());
  k::attention_forward(c.dev, s.ao, s.att, s.q, s.k, s.v, c.batch, m.seq_len, x.Hl, m.head_dim());
  k::linear_forward(c.dev, y, s.ao, p.o, N, x.dl, d);
}

void attention_sublayer_backward(const Chunk& c, const SublayerTensors& p, SublayerActs& s) {
  const BackwardScratch& t = c.t;
  const ModelConfig& m = c.cfg;
  const ChunkDims& x = c.dims;
  const int N = x.N, d = x.d;
  const float *cos_t = c.cos, *sin_t = c.sin;
  k::linear_backward(c.dev, t.dao, nullptr, s.dy, s.ao, p.o, N, x.dl, d, false);
  // The same kernel on the same inputs: the probabilities the forward had.
  if (m.recompute == Recompute::Selective)
    k::attention_forward(c.dev, t.ao, s.att, s.q, s.k, s.v, c.batch, m.seq_len, x.Hl, m.head_dim());
  k::attention_backward(c.dev, s.dq, s.dk, s.dv, t.datt, t.dao, s.att, s.q, s.k, s.v,
                        c.batch, m.seq_len, x.Hl, m.head_dim());
  k::rope_backward(c.dev, s.dq, cos_t, sin_t, c.batch, m.seq_len, x.Hl, m.head_dim());
  k::rope_backward(c.dev, s.dk, cos_t, sin_t, c.batch, m.seq_len, x.Hl, m.head_dim());
  k::linear_backward(c.dev, t.dxn, nullptr, s.dq, s.xn, p.q, N, d, x.dl, false);
  k::linear_backward(c.dev, t.dxn, nullptr, s.dk, s.xn, p.k, N, d, x.dl, true);
  k::linear_backward(c.dev, t.dxn, nullptr, s.dv, s.xn, p.v, N, d, x.dl, true);
}

void attention_sublayer_backward_weight(const Chunk& c, const SublayerTensors& g, const SublayerActs& s) {
  const ChunkDims& x = c.dims;
  const int N = x.N, d = x.d;
  k::linear_backward(c.dev, nullptr, g.o, s.dy, s.ao, nullptr, N, x.dl, d, false);
  k::linear_backward(c.dev, nullptr, g.q, s.dq, s.xn, nullptr, N, d, x.dl, false);
  k::linear_backward(c.dev, nullptr, g.k, s.dk, s.xn, nullptr, N, d, x.dl, false);
  k::linear_backward(c.dev, nullptr, g.v, s.dv, s.xn, nullptr, N, d, x.dl, false);
}

}  // namespace attnres
