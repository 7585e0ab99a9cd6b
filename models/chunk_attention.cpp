#include "models/chunk_parts.h"

#include "kernels/ops.h"

namespace attnres {

namespace k = kernels;

// q, k, v column-parallel on the full rows xn, RoPE on q and k, causal
// attention over this rank's Hl heads, then the row-parallel o.
void attention_sublayer_forward(const Chunk& c, const SublayerWeights& p, SublayerActs& s, float* y) {
  const ModelConfig& m = c.cfg;
  const ChunkDims& x = c.dims;
  const int N = x.N, d = x.d;
  const float *cos_t = c.cos, *sin_t = c.sin;
  matmul_forward(c, s.q, s.xn, s.xn_h, p.q, N, d, x.dl);
  matmul_forward(c, s.k, s.xn, s.xn_h, p.k, N, d, x.dl);
  matmul_forward(c, s.v, s.xn, s.xn_h, p.v, N, d, x.dl);
  k::rope_forward(c.dev, s.q, cos_t, sin_t, c.batch, m.seq_len, x.Hl, m.head_dim());
  k::rope_forward(c.dev, s.k, cos_t, sin_t, c.batch, m.seq_len, x.Hl, m.head_dim());
  if (m.flash()) k::flash_attention_forward(c.dev, s.ao, s.att, s.q, s.k, s.v, c.batch, m.seq_len, x.Hl, m.head_dim());
  else k::attention_forward(c.dev, s.ao, s.att, s.q, s.k, s.v, c.batch, m.seq_len, x.Hl, m.head_dim());
  keep_bf16(c, s.ao_h, s.ao, size_t(N) * x.dl);
  matmul_forward(c, y, s.ao, s.ao_h, p.o, N, x.dl, d);
}

void attention_sublayer_backward(const Chunk& c, const SublayerWeights& p, SublayerActs& s) {
  const BackwardScratch& t = c.t;
  const ModelConfig& m = c.cfg;
  const ChunkDims& x = c.dims;
  const int N = x.N, d = x.d;
  const size_t Ndl = size_t(N) * x.dl;
  const float *cos_t = c.cos, *sin_t = c.sin;
  matmul_backward_input(c, t.dao, s.dy, s.dy_h, p.o, N, x.dl, d, false);
  // The same kernel on the same inputs: the probabilities the forward had.
  if (m.recomputes_attention())
    k::attention_forward(c.dev, t.ao, s.att, s.q, s.k, s.v, c.batch, m.seq_len, x.Hl, m.head_dim());
  if (m.flash())  // s.att holds the log-sum-exp; t.datt is delta's scratch
    k::flash_attention_backward(c.dev, s.dq, s.dk, s.dv, t.datt, t.dao, s.att, s.q, s.k, s.v, c.batch, m.seq_len,
                                x.Hl, m.head_dim());
  else
    k::attention_backward(c.dev, s.dq, s.dk, s.dv, t.datt, t.dao, s.att, s.q, s.k, s.v, c.batch, m.seq_len, x.Hl,
                          m.head_dim());
  k::rope_backward(c.dev, s.dq, cos_t, sin_t, c.batch, m.seq_len, x.Hl, m.head_dim());
  k::rope_backward(c.dev, s.dk, cos_t, sin_t, c.batch, m.seq_len, x.Hl, m.head_dim());
  keep_bf16(c, s.dq_h, s.dq, Ndl), keep_bf16(c, s.dk_h, s.dk, Ndl), keep_bf16(c, s.dv_h, s.dv, Ndl);
  matmul_backward_input(c, t.dxn, s.dq, s.dq_h, p.q, N, d, x.dl, false);
  matmul_backward_input(c, t.dxn, s.dk, s.dk_h, p.k, N, d, x.dl, true);
  matmul_backward_input(c, t.dxn, s.dv, s.dv_h, p.v, N, d, x.dl, true);
}

void attention_sublayer_backward_weight(const Chunk& c, const SublayerTensors& g, const SublayerActs& s) {
  const ChunkDims& x = c.dims;
  const int N = x.N, d = x.d;
  matmul_backward_weight(c, g.o, s.dy, s.dy_h, s.ao, s.ao_h, N, x.dl, d);
  matmul_backward_weight(c, g.q, s.dq, s.dq_h, s.xn, s.xn_h, N, d, x.dl);
  matmul_backward_weight(c, g.k, s.dk, s.dk_h, s.xn, s.xn_h, N, d, x.dl);
  matmul_backward_weight(c, g.v, s.dv, s.dv_h, s.xn, s.xn_h, N, d, x.dl);
}

}  // namespace attnres
