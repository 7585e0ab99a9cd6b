#include "models/chunk_parts.h"

#include "kernels/ops.h"

namespace attnres {

namespace k = kernels;

void embed_forward(const Chunk& c, float* x0, const int32_t* tokens) {
  const ChunkDims& x = c.dims;
  float* out = partial_target(c, x0);
  if (c.cfg.bf16()) k::embedding_forward(c.dev, out, tokens, c.p.embed.h, x.N, x.d, x.v0, x.Vl);
  else k::embedding_forward(c.dev, out, tokens, c.p.embed.f, x.N, x.d, x.v0, x.Vl);
  sum_partials(c, out, x0);
  round_stream(c, x0);
}

void embed_backward(const Chunk& c, const float* dx0, const int32_t* tokens) {
  const ChunkDims& x = c.dims;
  const float* full = dx0;
  if (c.tp.sequence_parallel) gather_rows(c, c.t.full, dx0), full = c.t.full;
  k::embedding_backward(c.dev, c.g.embed, full, tokens, x.N, x.d, c.cfg.vocab_size, x.v0, x.Vl);
}

void head_forward(const Chunk& c, HeadActs& h, const int32_t* targets, double* loss) {
  const ChunkDims& x = c.dims;
  const int N = x.N;
  matmul_forward(c, h.logits, h.xn, h.xn_h, c.p.lm_head, N, x.d, x.Vl);
  k::cross_entropy_row_max(c.dev, h.row_max, h.logits, N, x.Vl);
  if (c.tp.coll) c.tp.coll->allreduce_max(h.row_max, size_t(N));
  k::cross_entropy_row_sums(c.dev, h.sum_exp, h.target_logit, h.logits, targets, h.row_max, N, x.Vl,
                            x.v0, c.cfg.vocab_size);
  if (c.tp.coll) c.tp.coll->allreduce_sum(h.sum_exp, 2 * size_t(N));  // and target_logit
  k::cross_entropy_loss(c.dev, h.losses, h.row_max, h.sum_exp, h.target_logit, targets, N);
  if (loss) k::sum(c.dev, loss, h.losses, size_t(N));
}

void head_backward(const Chunk& c, HeadActs& h, const float* xin, const int32_t* targets, float loss_scale,
                   float* dx, float* sdot) {
  const ChunkDims& x = c.dims;
  const BackwardScratch& t = c.t;
  k::cross_entropy_backward(c.dev, h.dlogits, h.logits, targets, h.row_max, h.sum_exp, x.N, x.Vl, x.v0,
                            loss_scale);
  keep_bf16(c, h.dlogits_h, h.dlogits, size_t(x.N) * x.Vl);
  matmul_backward_input(c, t.dxn, h.dlogits, h.dlogits_h, c.p.lm_head, x.N, x.d, x.Vl, false);
  const float* dxn = sum_partials(c, t.dxn, t.dxn_res);
  k::rmsnorm_backward(c.dev, dx, c.g.final_norm, dxn, xin, c.p.final_norm.f, h.rstd, x.Nr, x.d, sdot);
}

}  // namespace attnres
