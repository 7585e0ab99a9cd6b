// Incremental decoding of a whole model with a KV cache (`attnres generate`).
// One token per step: its keys and values are appended to each attention
// sublayer's cache and its query attends to every cached position. The depth
// attention is token-local, so a token's AttnRes sources (the embedding and
// its block sums) are computed once, in that step, and never again.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/memory.h"
#include "models/chunk.h"

namespace attnres {

struct Decoder {
  const Chunk* model = nullptr;  // the chunk [0, L) on one rank (tp = 1)
  int pos = 0;                   // tokens in the cache; at most model->cfg.seq_len
  kernels::DeviceBuffer<float> cache;  // per attention sublayer: keys, then values, [seq_len, d] each
  kernels::DeviceBuffer<float> work;   // one token's vectors (the views below)
  std::vector<float*> keys, values;    // per attention sublayer
  // AttnRes: sources[0] is the embedding, sources[b + 1] block b's (partial) sum.
  std::vector<float*> sources;
  float* source_rstd = nullptr;  // one per source
  float *h, *lse, *xn, *rstd, *q, *ao, *scores, *y, *gate, *up, *act, *logits;
};

// Allocates the cache and the per-token buffers for `model` (which must stay alive).
void decoder_init(Decoder& dec, const Chunk& model);
// Empties the cache: the next token is at position 0.
inline void decoder_reset(Decoder& dec) { dec.pos = 0; }
// Runs `token` at position dec.pos (< seq_len) and returns the logits of the
// next token [vocab_size] on the host.
std::vector<float> decoder_step(Decoder& dec, int32_t token);

}  // namespace attnres
