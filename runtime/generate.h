// Text generation from a trained model: the prompt's bytes fed through the
// incremental decoder (models/decode.h), then sampled tokens.
#pragma once
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "models/decode.h"

namespace attnres {

struct SampleOptions {
  int tokens = 256;          // tokens to generate
  float temperature = 0.8f;  // 0: greedy (the most likely token, the lowest id on a tie)
  int top_k = 0;             // sample among the k most likely; 0: among all
  uint64_t seed = 0;
};

// One token from next-token logits. Only byte ids [0, min(V, 256)) are drawn:
// the tokenizer is bytes, so other ids cannot be printed.
int32_t sample_token(const std::vector<float>& logits, const SampleOptions& o, std::mt19937_64& rng);

// Feeds `prompt` (non-empty) and samples o.tokens tokens, calling on_token
// with each as it is drawn; returns them. When the cache is full (seq_len
// tokens) the context slides: the last seq_len / 2 tokens are fed again into
// an empty cache, so positions stay within what the model was trained on.
std::vector<int32_t> generate(Decoder& dec, const std::vector<int32_t>& prompt, const SampleOptions& o,
                              const std::function<void(int32_t)>& on_token);

}  // namespace attnres
