#include "models/decode.h"

#include <cassert>
#include <iterator>
#include <stdexcept>
#include <string>

#include "kernels/ops.h"

namespace attnres {

namespace k = kernels;

void decoder_init(Decoder& dec, const Chunk& model) {
  assert(model.first == 0 && model.has_head && model.tp.tp.size == 1);
  // Decoding reads fp32 weights (.f): a model loaded from an export.
  if (model.cfg.bf16()) throw std::invalid_argument("decoder_init: decoding runs in fp32 (model.precision: fp32)");
  const ModelConfig& m = model.cfg;
  const size_t T = size_t(m.seq_len), d = size_t(m.d_model), F = size_t(m.d_ff), V = size_t(m.vocab_size);
  const size_t n_src = m.attnres() ? size_t(m.num_blocks()) + 1 : 0;
  dec.model = &model;
  dec.pos = 0;
  dec.cache = k::DeviceBuffer<float>(model.dev, size_t(m.n_layers) * 2 * T * d);
  dec.keys.clear(), dec.values.clear();
  for (int a = 0; a < m.n_layers; ++a) {
    dec.keys.push_back(dec.cache.data() + size_t(2 * a) * T * d);
    dec.values.push_back(dec.cache.data() + size_t(2 * a + 1) * T * d);
  }
  // Views carved in order; sizes in floats.
  const size_t sizes[] = {d, 1, d, 1, d, d, size_t(m.n_heads) * T, d, F, F, F, V, n_src, n_src * d};
  size_t total = 0;
  for (size_t s : sizes) total += s;
  dec.work = k::DeviceBuffer<float>(model.dev, total);
  float* p = dec.work.data();
  float** views[] = {&dec.h,  &dec.lse, &dec.xn,  &dec.rstd, &dec.q,      &dec.ao,     &dec.scores,
                     &dec.y,  &dec.gate, &dec.up, &dec.act,  &dec.logits, &dec.source_rstd};
  for (size_t i = 0; i < std::size(views); ++i) *views[i] = p, p += sizes[i];
  dec.sources.clear();
  for (size_t s = 0; s < n_src; ++s) dec.sources.push_back(p + s * d);
}

namespace {

// y = f_j(RMSNorm(h)) for the token at dec.pos; an attention sublayer also
// appends the token's key and value to its cache.
void sublayer_step(Decoder& dec, const SublayerWeights& p, int j) {
  const Chunk& c = *dec.model;
  const ModelConfig& m = c.cfg;
  const int d = m.d_model, F = m.d_ff, H = m.n_heads, hd = m.head_dim();
  k::rmsnorm_forward(c.dev, dec.xn, dec.rstd, dec.h, p.norm.f, 1, d, m.norm_eps);
  if (j % 2 == 0) {
    float* key = dec.keys[size_t(j / 2)] + size_t(dec.pos) * d;
    float* value = dec.values[size_t(j / 2)] + size_t(dec.pos) * d;
    const size_t row = size_t(dec.pos) * (hd / 2);  // RoPE table row of this position
    const float *cos_t = c.cos + row, *sin_t = c.sin + row;
    k::linear_forward(c.dev, dec.q, dec.xn, p.q.f, 1, d, d);
    k::linear_forward(c.dev, key, dec.xn, p.k.f, 1, d, d);
    k::linear_forward(c.dev, value, dec.xn, p.v.f, 1, d, d);
    k::rope_forward(c.dev, dec.q, cos_t, sin_t, 1, 1, H, hd);
    k::rope_forward(c.dev, key, cos_t, sin_t, 1, 1, H, hd);
    k::attention_decode(c.dev, dec.ao, dec.scores, dec.q, dec.keys[size_t(j / 2)], dec.values[size_t(j / 2)],
                        dec.pos + 1, H, hd);
    k::linear_forward(c.dev, dec.y, dec.ao, p.o.f, 1, d, d);
  } else {
    k::linear_forward(c.dev, dec.gate, dec.xn, p.gate.f, 1, d, F);
    k::linear_forward(c.dev, dec.up, dec.xn, p.up.f, 1, d, F);
    k::swiglu_forward(c.dev, dec.act, dec.gate, dec.up, size_t(F));
    k::linear_forward(c.dev, dec.y, dec.act, p.down.f, 1, F, d);
  }
}

// h = AttnRes over the first K completed sources and, if `partial`, the
// block's partial sum after them: the two phases of chunk_forward.
void depth_attention(Decoder& dec, int K, bool partial, const float* query, const float* norm) {
  const Chunk& c = *dec.model;
  const int d = c.cfg.d_model;
  std::vector<const float*> rstd(static_cast<size_t>(K));
  for (int s = 0; s < K; ++s) rstd[size_t(s)] = dec.source_rstd + s;
  float* h[] = {dec.h};
  float* lse[] = {dec.lse};
  k::attnres_block_forward(c.dev, h, lse, nullptr, dec.sources.data(), rstd.data(), K, &query, &norm, 1, 1, d);
  if (partial)
    k::attnres_merge_partial(c.dev, dec.h, dec.lse, dec.sources[size_t(K)], dec.source_rstd + K, query, norm, 1, d);
}

// The residual stream of one token through every sublayer; leaves the input
// of the final norm in dec.h.
void stream_step(Decoder& dec) {
  const Chunk& c = *dec.model;
  const ModelConfig& m = c.cfg;
  const int d = m.d_model;
  if (!m.attnres()) {
    for (int j = 0; j < m.num_sublayers(); ++j) {
      sublayer_step(dec, c.p.sub[size_t(j)], j);
      k::add_inplace(c.dev, dec.h, dec.y, size_t(d));
    }
    return;
  }
  // Sources: the embedding (already in sources[0]) and one sum per block, as
  // chunk_forward builds them; their key-side rstd once each.
  k::rms_inverse(c.dev, dec.source_rstd, dec.sources[0], 1, d, m.norm_eps);
  for (int j = 0; j < m.num_sublayers(); ++j) {
    const int b = m.block_of(j);
    depth_attention(dec, b + 1, !m.starts_block(j), c.p.sub[size_t(j)].res_query.f, c.p.sub[size_t(j)].res_norm.f);
    sublayer_step(dec, c.p.sub[size_t(j)], j);
    float* sum = dec.sources[size_t(b) + 1];
    if (m.starts_block(j)) {
      k::copy(c.dev, sum, dec.y, size_t(d), k::CopyKind::DeviceToDevice);
      k::rms_inverse(c.dev, dec.source_rstd + b + 1, sum, 1, d, m.norm_eps);
    } else {  // as chunk_forward: the running sum and its rstd in one pass
      k::add_rms_inverse(c.dev, sum, dec.source_rstd + b + 1, sum, dec.y, 1, d, m.norm_eps);
    }
  }
  // The output site as chunk_forward computes it: the final block sum is its partial.
  depth_attention(dec, m.num_blocks(), true, c.p.out_query.f, c.p.out_norm.f);
}

}  // namespace

std::vector<float> decoder_step(Decoder& dec, int32_t token) {
  const Chunk& c = *dec.model;
  const ModelConfig& m = c.cfg;
  const int d = m.d_model, V = m.vocab_size;
  if (dec.pos >= m.seq_len) throw std::logic_error("decoder_step: the cache holds seq_len tokens already");
  if (token < 0 || token >= V)
    throw std::invalid_argument("token " + std::to_string(token) + " is outside the vocabulary of " +
                                std::to_string(V));
  float* x0 = m.attnres() ? dec.sources[0] : dec.h;
  k::embedding_forward(c.dev, x0, &token, c.p.embed.f, 1, d, 0, V);
  stream_step(dec);
  k::rmsnorm_forward(c.dev, dec.xn, dec.rstd, dec.h, c.p.final_norm.f, 1, d, m.norm_eps);
  k::linear_forward(c.dev, dec.logits, dec.xn, c.p.lm_head.f, 1, d, V);
  ++dec.pos;
  return k::to_host(c.dev, dec.logits, size_t(V));
}

}  // namespace attnres
