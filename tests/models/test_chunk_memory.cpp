// chunk_floats() (the plan's source) equals what chunk_init and acts_init
// allocate, and the typed views point where the names say.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/memory.h"
#include "models/chunk.h"

using namespace attnres;

namespace {

ModelConfig small(ResidualMode mode, int S) {
  ModelConfig m;
  m.vocab_size = 64, m.d_model = 16, m.n_layers = 3, m.n_heads = 2, m.d_ff = 24, m.seq_len = 8;
  m.mode = mode;
  m.block_size = S;
  return m;
}

}  // namespace

TEST(ChunkMemory, FloatsEqualAllocations) {
  const kernels::Device dev;
  for (const ModelConfig& m : {small(ResidualMode::Standard, 1), small(ResidualMode::AttnRes, 1),
                               small(ResidualMode::AttnRes, 2), small(ResidualMode::AttnRes, 4)})
    for (const auto& [first, last] : std::vector<std::pair<int, int>>{{0, 6}, {0, 1}, {1, 4}, {3, 6}, {5, 6}})
      for (int b : {1, 3}) {
        const ChunkFloats f = chunk_floats(m, first, last, b);
        const size_t before = kernels::allocated_bytes(dev);
        Chunk c;
        chunk_init(c, m, first, last, b, 1, dev);
        const size_t after_chunk = kernels::allocated_bytes(dev);
        EXPECT_EQ(after_chunk - before, 4 * (f.params + f.grads + f.rope + f.scratch))
            << residual_mode_name(m.mode) << " S=" << m.block_size << " [" << first << "," << last << ") b=" << b;
        ChunkActs a;
        acts_init(a, c);
        EXPECT_EQ(kernels::allocated_bytes(dev) - after_chunk, 4 * f.acts)
            << residual_mode_name(m.mode) << " S=" << m.block_size << " [" << first << "," << last << ") b=" << b;
        // A larger microbatch needs a larger arena.
        EXPECT_LT(chunk_floats(m, first, last, b).acts, chunk_floats(m, first, last, b + 1).acts);
      }
}

// Selective recomputation drops each attention sublayer's probabilities
// [b, H, T, T] from the arena and keeps one set, plus one attention output,
// in the chunk's scratch; the allocations still equal the plan.
TEST(ChunkMemory, SelectiveRecomputeKeepsNoProbabilities) {
  const kernels::Device dev;
  for (const ModelConfig& base : {small(ResidualMode::Standard, 1), small(ResidualMode::AttnRes, 2)})
    for (const auto& [first, last] : std::vector<std::pair<int, int>>{{0, 6}, {1, 4}, {5, 6}}) {
      ModelConfig m = base;
      m.recompute = Recompute::Selective;
      const int b = 3, attention_sublayers = (last - first + (first % 2 == 0 ? 1 : 0)) / 2;
      const size_t att = size_t(b) * m.n_heads * m.seq_len * m.seq_len;
      const ChunkFloats none = chunk_floats(base, first, last, b), sel = chunk_floats(m, first, last, b);
      EXPECT_EQ(none.acts - sel.acts, attention_sublayers * att) << "[" << first << "," << last << ")";
      EXPECT_EQ(sel.scratch - none.scratch, att + size_t(b) * m.seq_len * m.d_model) << "[" << first << "," << last << ")";
      const size_t before = kernels::allocated_bytes(dev);
      Chunk c;
      chunk_init(c, m, first, last, b, 1, dev);
      ChunkActs a;
      acts_init(a, c);
      EXPECT_EQ(kernels::allocated_bytes(dev) - before, 4 * (sel.params + sel.grads + sel.rope + sel.scratch + sel.acts));
      for (int j = first + first % 2; j < last; j += 2) EXPECT_EQ(a.v.sub[size_t(j - first)].att, c.t.att);
    }
}

TEST(ChunkMemory, ViewsPointAtTheNamedTensors) {
  const ModelConfig m = small(ResidualMode::AttnRes, 2);
  Chunk c;
  chunk_init(c, m, 0, m.num_sublayers(), 1, 1);
  const float* base = c.params.data();
  const float* gbase = c.grads.data();
  EXPECT_EQ(c.p.embed, base + c.layout.find("embed.weight")->offset);
  EXPECT_EQ(c.p.lm_head, base + c.layout.find("lm_head.weight")->offset);
  EXPECT_EQ(c.g.out_query, gbase + c.layout.find("output_res.query")->offset);
  EXPECT_EQ(c.p.sub[2].q, base + c.layout.find("layers.2.attn.q.weight")->offset);
  EXPECT_EQ(c.g.sub[3].down, gbase + c.layout.find("layers.3.mlp.down.weight")->offset);
  EXPECT_EQ(c.p.sub[3].q, nullptr);  // an MLP sublayer has no attention weights
  EXPECT_EQ(c.p.sub[1].res_norm, base + c.layout.find("layers.1.res.norm.weight")->offset);
}
