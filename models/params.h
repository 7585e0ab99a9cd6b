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

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;  // PyTorch order, e.g. Linear [out, in]
  size_t offset = 0;           // in floats, into the flat buffer
  size_t numel = 0;
  bool decay = false;          // AdamW weight decay applies (matrices only)
};

struct ParamLayout {
  std::vector<TensorSpec> tensors;  // in global tensor order
  size_t total = 0;                 // floats
  const TensorSpec* find(const std::string& name) const;  // null if absent
};

// Tensors of sublayers [first, last), plus the embedding when first == 0 and
// the output site, final norm and LM head when last == L. Global order:
// embed, layers.0.*, layers.1.*, ..., output_res.*, final_norm, lm_head.
ParamLayout make_param_layout(const ModelConfig& cfg, int first, int last);

// Initial values: linear weights and embeddings ~ N(0, 0.02) (attn.o and
// mlp.down scaled by 1/sqrt(2 n_layers), as in GPT-2), norm gains 1,
// AttnRes pseudo-queries 0 [paper].
void init_params(const ModelConfig& cfg, const ParamLayout& layout, float* params,
                 uint64_t seed);

// Fills `out` with N(0, std) from a generator keyed by (seed, name).
void fill_normal(float* out, size_t n, float std, uint64_t seed, const std::string& name);

}  // namespace attnres
