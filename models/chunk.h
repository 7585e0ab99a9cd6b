// Forward and backward of a chunk: a contiguous range of sublayers [first, last)
// (DESIGN §1, §2). The whole model is the chunk [0, L). No communication here:
// the residual stream enters and leaves as a Stream of device pointers, and the
// caller (trainer or pipeline executor) moves it between chunks.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/device.h"
#include "models/model_config.h"
#include "models/params.h"

namespace attnres {

// The residual stream at a sublayer boundary for one microbatch; every tensor
// is [b*T, d]. Also used for the gradient of a stream.
struct Stream {
  float* hidden = nullptr;       // standard mode: x
  std::vector<float*> sources;   // attnres: completed sources, b_0 first
  float* partial = nullptr;      // attnres: partial block sum, if the boundary cuts a block
};

// Parameters and gradients of one chunk, plus scratch shared by its microbatches.
struct Chunk {
  ModelConfig cfg;
  kernels::Device dev;
  int first = 0, last = 0;  // sublayers [first, last)
  int batch = 0;            // sequences per microbatch (b)
  bool has_embed = false, has_head = false;
  ParamLayout layout;
  float* params = nullptr;  // layout.total floats
  float* grads = nullptr;   // layout.total floats, accumulated over microbatches
  float* rope_cos = nullptr;
  float* rope_sin = nullptr;
  float* scratch = nullptr;  // transient buffers of one backward pass
  size_t scratch_floats = 0;
};

// Allocates parameters (initialised from seed), gradients and scratch.
void chunk_init(Chunk& c, const ModelConfig& cfg, int first, int last, int batch,
                uint64_t seed, kernels::Device dev = {});
void chunk_free(Chunk& c);
float* chunk_param(const Chunk& c, const std::string& name);  // null if absent
float* chunk_grad(const Chunk& c, const std::string& name);

// Everything one microbatch's forward keeps for its backward, in one arena.
struct ChunkActs {
  float* arena = nullptr;
  size_t floats = 0;
  int n_in_sources = 0;            // sources in the input stream
  float* in_hidden = nullptr;      // standard mode: the input stream x
  Stream out;                      // the output stream (points into the arena / input)
  std::vector<float*> site_src;    // flattened per-site source pointers (attnres)
  std::vector<int> site_k;         // sources per site, L-range then the output site
};
void acts_init(ChunkActs& a, const Chunk& c);
void acts_free(ChunkActs& a, const Chunk& c);
size_t acts_floats(const Chunk& c);  // arena size of one microbatch

// Forward of one microbatch. tokens [b*T] are read by the first chunk, targets
// [b*T] by the last, which returns the sum of its token losses (else 0).
// `in` is ignored by the first chunk. After the call a.out is the output stream;
// its tensors stay valid until `a` runs another forward.
double chunk_forward(const Chunk& c, ChunkActs& a, const int32_t* tokens,
                     const int32_t* targets, const Stream& in);

// Per-token losses [b*T] of the last forward of the last chunk.
const float* chunk_token_losses(const Chunk& c, const ChunkActs& a);

// Backward, input-gradient half. `dout` holds gradient buffers shaped like
// a.out: for the last chunk, zeroed buffers for every source (attnres) or null
// (standard); otherwise the gradients received from the next chunk. Gradients
// are accumulated in place; on return `din` points at the gradient of the
// input stream (aliasing dout's buffers: din.sources are dout.sources' first
// n_in_sources). loss_scale multiplies dL/dlogits (1 / tokens per step).
// Also accumulates the gradients of norms, pseudo-queries and the embedding.
void chunk_backward_input(const Chunk& c, ChunkActs& a, const int32_t* tokens,
                          const int32_t* targets, float loss_scale, Stream& dout,
                          Stream& din);
// Backward, weight-gradient half: dW += dY^T X for every matrix of the chunk,
// from what chunk_backward_input saved in `a`.
void chunk_backward_weight(const Chunk& c, ChunkActs& a);

}  // namespace attnres
