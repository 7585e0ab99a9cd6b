// Parameter layout of a chunk (a sublayer range): every tensor's global name
// (DESIGN §1.2), shape, and offset in one flat buffer. The same names and
// initial values come out however the model is split, because each tensor is
// initialised from (seed, its name) alone.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "models/model_config.h"

namespace attnres {

// A tensor as this rank holds it. Under tensor parallelism (DESIGN §6) a
// matrix is split along one dimension into tp equal shards; `shape` is the
// local shard, `global_shape` the whole tensor, and the shard covers
// [shard_offset, shard_offset + shape[shard_dim]) of global dimension
// shard_dim. Vectors (norm gains, pseudo-queries) are replicated (shard_dim -1).
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;         // local, PyTorch order, e.g. Linear [out, in]
  std::vector<int64_t> global_shape;  // of the whole tensor
  int shard_dim = -1;                 // -1: every tp rank holds all of it
  int64_t shard_offset = 0;           // along shard_dim, in global indices
  size_t offset = 0;                  // in floats, into the flat buffer
  size_t numel = 0;                   // local
  bool decay = false;                 // AdamW weight decay applies (matrices only)
  bool sharded() const { return shard_dim >= 0; }
};

// This rank's place in the tensor-parallel group.
struct TpRank {
  int rank = 0, size = 1;
};

struct ParamLayout {
  std::vector<TensorSpec> tensors;  // in global tensor order
  size_t total = 0;                 // floats
  const TensorSpec* find(const std::string& name) const;  // null if absent
};

// Tensors of sublayers [first, last), plus the embedding when first == 0 and
// the output site, final norm and LM head when last == L. Global order:
// embed, layers.0.*, layers.1.*, ..., output_res.*, final_norm, lm_head.
// Megatron's splits over tp ranks: embedding, LM head, q, k, v, gate and up
// by rows (vocabulary, whole heads, F); o and down by columns. The divisions
// must be exact (the config loader checks).
ParamLayout make_param_layout(const ModelConfig& cfg, int first, int last, TpRank tp = {});

// Copies shard `t` (its local elements, row-major) into its place in the
// whole tensor (global_shape, row-major), or takes it out of the whole.
void shard_to_whole(float* whole, const TensorSpec& t, const float* shard);
void whole_to_shard(float* shard, const TensorSpec& t, const float* whole);

// Initial values: linear weights and embeddings ~ N(0, 0.02) (attn.o and
// mlp.down scaled by 1/sqrt(2 n_layers), as in GPT-2), norm gains 1,
// AttnRes pseudo-queries 0 [paper]. Writes this rank's shards into host
// memory `params`; the values do not depend on tp.
void init_params(const ModelConfig& cfg, const ParamLayout& layout, float* params,
                 uint64_t seed);

// Fills `out` with elements [first, first + n) of the N(0, std) sequence
// keyed by (seed, name): element i is a function of (seed, name, i) alone, so
// a shard draws exactly the values the whole tensor has there.
void fill_normal(float* out, size_t first, size_t n, float std, uint64_t seed,
                 const std::string& name);

}  // namespace attnres
