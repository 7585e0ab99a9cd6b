// Sampling and generation: greedy decoding is deterministic and is the
// argmax chain of the full-window forward; a seed fixes sampled text; top-k
// draws only among the k most likely; generation runs past seq_len by
// sliding the context.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <vector>

#include "kernels/memory.h"
#include "models/chunk.h"
#include "models/decode.h"
#include "runtime/generate.h"

using namespace attnres;
namespace k = attnres::kernels;

namespace {

struct Model {
  Chunk chunk;
  Decoder dec;
  explicit Model(int seq_len) {
    ModelConfig m;
    m.d_model = 32, m.n_layers = 2, m.n_heads = 4, m.d_ff = 48, m.seq_len = seq_len, m.block_size = 2;
    chunk_init(chunk, m, 0, m.num_sublayers(), 1, 9);
    std::mt19937 rng(1);
    std::normal_distribution<float> n(0.0f, 0.5f);
    std::vector<float> p = chunk_weights_to_host(chunk);
    for (float& x : p) x += n(rng);
    chunk_load_weights(chunk, p.data());
    decoder_init(dec, chunk);
  }
  std::vector<int32_t> run(const std::vector<int32_t>& prompt, const SampleOptions& o) {
    return generate(dec, prompt, o, [](int32_t) {});
  }
};

const std::vector<int32_t> kPrompt = {'d', 'e', 'f', ' '};

}  // namespace

TEST(Generate, GreedyIsDeterministicAndTheArgmaxChainOfTheFullForward) {
  Model m(16);
  SampleOptions o;
  o.temperature = 0, o.tokens = 10;
  const std::vector<int32_t> a = m.run(kPrompt, o);
  o.seed = 123;  // greedy ignores the seed
  EXPECT_EQ(m.run(kPrompt, o), a);

  // The same chain from full-window forwards over the growing text.
  ChunkActs acts;
  acts_init(acts, m.chunk);
  const int T = m.chunk.cfg.seq_len, V = m.chunk.cfg.vocab_size;
  std::vector<int32_t> text = kPrompt;
  for (size_t i = 0; i < a.size(); ++i) {
    const int n = int(text.size());
    std::vector<int32_t> window(text), targets(size_t(T), 0);
    window.resize(size_t(T), 0);  // later rows do not affect row n - 1 (causal)
    chunk_forward(m.chunk, acts, window.data(), targets.data(), ResidualState{});
    const std::vector<float> row = k::to_host(m.chunk.dev, acts.v.head.logits + size_t(n - 1) * V, size_t(V));
    const int32_t best = int32_t(std::max_element(row.begin(), row.end()) - row.begin());
    EXPECT_EQ(a[i], best) << "token " << i;
    text.push_back(a[i]);
  }
}

TEST(Generate, TheSeedFixesSampledText) {
  Model m(16);
  SampleOptions o;
  o.temperature = 1.0f, o.tokens = 24, o.seed = 42;
  const std::vector<int32_t> a = m.run(kPrompt, o);
  EXPECT_EQ(m.run(kPrompt, o), a);
  o.seed = 43;
  EXPECT_NE(m.run(kPrompt, o), a);
}

TEST(Generate, TopKDrawsOnlyAmongTheKMostLikely) {
  std::vector<float> logits(256, 0.0f);
  logits[7] = 5, logits[9] = 4.9f, logits[200] = 4.8f;
  SampleOptions o;
  o.temperature = 5.0f, o.top_k = 2;
  std::mt19937_64 rng(0);
  std::set<int32_t> seen;
  for (int i = 0; i < 400; ++i) seen.insert(sample_token(logits, o, rng));
  EXPECT_EQ(seen, (std::set<int32_t>{7, 9}));
  o.temperature = 0;
  logits[9] = 5;  // a tie: the lower id
  EXPECT_EQ(sample_token(logits, o, rng), 7);
}

TEST(Generate, RunsPastTheContextBySliding) {
  Model m(8);
  SampleOptions o;
  o.temperature = 0.7f, o.tokens = 30;
  const std::vector<int32_t> out = m.run(kPrompt, o);
  EXPECT_EQ(out.size(), 30u);
  EXPECT_LE(m.dec.pos, 8);
  for (int32_t t : out) EXPECT_TRUE(t >= 0 && t < 256);
  EXPECT_THROW(m.run({}, o), std::invalid_argument);
}
