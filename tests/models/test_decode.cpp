// Incremental decoding with a KV cache against the full-window forward: at
// every position the decoder's next-token logits equal the forward's logits of
// that row within 1e-5 of the largest logit, for standard residuals and for Block AttnRes with
// blocks that end inside and at the end of the model (partial sums), and with
// one sublayer per block (Full AttnRes).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/memory.h"
#include "models/chunk.h"
#include "models/decode.h"

using namespace attnres;
namespace k = attnres::kernels;

namespace {

ModelConfig small(ResidualMode mode, int S) {
  ModelConfig m;
  m.vocab_size = 256;
  m.d_model = 32;
  m.n_layers = 3;  // L = 6 sublayers
  m.n_heads = 4;
  m.d_ff = 48;
  m.seq_len = 12;
  m.mode = mode;
  m.block_size = S;
  return m;
}

// Every parameter perturbed: non-zero pseudo-queries give non-uniform depth weights.
void randomize(Chunk& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 0.3f);
  std::vector<float> p = chunk_weights_to_host(c);
  for (float& x : p) x += n(rng);
  chunk_load_weights(c, p.data());
}

void expect_incremental_equals_full(const ModelConfig& m) {
  Chunk model;
  chunk_init(model, m, 0, m.num_sublayers(), 1, 7);
  randomize(model, 11);
  ChunkActs acts;
  acts_init(acts, model);
  std::mt19937 rng(5);
  std::vector<int32_t> tokens(size_t(m.seq_len)), targets(size_t(m.seq_len));
  for (size_t t = 0; t < tokens.size(); ++t) tokens[t] = int32_t(rng() % 256), targets[t] = int32_t(rng() % 256);
  chunk_forward(model, acts, tokens.data(), targets.data(), ResidualState{});
  const std::vector<float> full =
      k::to_host(model.dev, acts.v.head.logits, size_t(m.seq_len) * size_t(m.vocab_size));

  Decoder dec;
  decoder_init(dec, model);
  double worst = 0, scale = 0;
  for (float x : full) scale = std::max(scale, double(std::fabs(x)));
  for (int t = 0; t < m.seq_len; ++t) {
    const std::vector<float> logits = decoder_step(dec, tokens[size_t(t)]);
    ASSERT_EQ(logits.size(), size_t(m.vocab_size));
    for (int v = 0; v < m.vocab_size; ++v)
      worst = std::max(worst, double(std::fabs(logits[size_t(v)] - full[size_t(t) * m.vocab_size + v])));
  }
  // Relative to the largest logit: float32 sums in another order (one row
  // against a whole window's matmuls) differ in the last bits.
  EXPECT_LE(worst / scale, 1e-5) << "largest |incremental - full| logit difference " << worst << ", largest logit "
                                 << scale;
  EXPECT_EQ(dec.pos, m.seq_len);
  EXPECT_THROW(decoder_step(dec, 0), std::logic_error);  // the cache is full
}

}  // namespace

TEST(Decode, StandardResidualsMatchTheFullForward) { expect_incremental_equals_full(small(ResidualMode::Standard, 1)); }
TEST(Decode, BlockAttnResMatchesTheFullForward) { expect_incremental_equals_full(small(ResidualMode::AttnRes, 4)); }
TEST(Decode, FullAttnResMatchesTheFullForward) { expect_incremental_equals_full(small(ResidualMode::AttnRes, 1)); }
TEST(Decode, OneBlockMatchesTheFullForward) { expect_incremental_equals_full(small(ResidualMode::AttnRes, 6)); }

TEST(Decode, ResetStartsAgainAtPositionZero) {
  const ModelConfig m = small(ResidualMode::AttnRes, 2);
  Chunk model;
  chunk_init(model, m, 0, m.num_sublayers(), 1, 7);
  randomize(model, 3);
  Decoder dec;
  decoder_init(dec, model);
  const std::vector<float> first = decoder_step(dec, 65);
  decoder_step(dec, 66);
  decoder_reset(dec);
  EXPECT_EQ(decoder_step(dec, 65), first);
  EXPECT_THROW(decoder_step(dec, 256), std::invalid_argument);
}
