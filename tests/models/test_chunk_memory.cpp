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

// What chunk_init allocates, from chunk_floats.
static size_t chunk_bytes(const ChunkFloats& f) {
  return 4 * (f.params + f.widened + f.grads + f.rope + f.scratch) + 2 * f.compute_weights;
}

static ModelConfig in_bf16(ModelConfig m) {
  m.precision = kernels::DType::BF16;
  return m;
}

TEST(ChunkMemory, FloatsEqualAllocations) {
  const kernels::Device dev;
  for (const ModelConfig& m : {small(ResidualMode::Standard, 1), small(ResidualMode::AttnRes, 1),
                               small(ResidualMode::AttnRes, 2), small(ResidualMode::AttnRes, 4),
                               in_bf16(small(ResidualMode::AttnRes, 2))})
    for (const auto& [first, last] : std::vector<std::pair<int, int>>{{0, 6}, {0, 1}, {1, 4}, {3, 6}, {5, 6}})
      for (int b : {1, 3}) {
        const ChunkFloats f = chunk_floats(m, first, last, b);
        const size_t before = kernels::allocated_bytes(dev);
        Chunk c;
        chunk_init(c, m, first, last, b, 1, dev);
        const size_t after_chunk = kernels::allocated_bytes(dev);
        EXPECT_EQ(after_chunk - before, chunk_bytes(f))
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
      EXPECT_EQ(kernels::allocated_bytes(dev) - before, chunk_bytes(sel) + 4 * sel.acts);
      for (int j = first + first % 2; j < last; j += 2) EXPECT_EQ(a.v.sub[size_t(j - first)].att, c.t.att);
    }
}

// Flash attention keeps each attention's log-sum-exp [b, H, T] instead of
// its probabilities [b, H, T, T], and its backward scratch holds delta
// [b, H, T] instead of the score gradients: no T² term is left.
TEST(ChunkMemory, FlashAttentionKeepsNoProbabilities) {
  const kernels::Device dev;
  for (const auto& [first, last] : std::vector<std::pair<int, int>>{{0, 6}, {1, 4}, {5, 6}}) {
    const ModelConfig base = small(ResidualMode::AttnRes, 2);
    ModelConfig m = base;
    m.attention = Attention::Flash;
    const int b = 3, attention_sublayers = (last - first + (first % 2 == 0 ? 1 : 0)) / 2;
    const size_t rows = size_t(b) * m.n_heads * m.seq_len, att = rows * m.seq_len;
    const ChunkFloats none = chunk_floats(base, first, last, b), flash = chunk_floats(m, first, last, b);
    EXPECT_EQ(none.acts - flash.acts, attention_sublayers * (att - rows)) << "[" << first << "," << last << ")";
    EXPECT_EQ(none.scratch - flash.scratch, att - rows) << "[" << first << "," << last << ")";
    m.recompute = Recompute::Selective;  // nothing left to recompute
    EXPECT_EQ(chunk_floats(m, first, last, b).acts, flash.acts);
    const size_t before = kernels::allocated_bytes(dev);
    Chunk c;
    chunk_init(c, m, first, last, b, 1, dev);
    ChunkActs a;
    acts_init(a, c);
    EXPECT_EQ(kernels::allocated_bytes(dev) - before, chunk_bytes(flash) + 4 * flash.acts);
  }
}

TEST(ChunkMemory, ViewsPointAtTheNamedTensors) {
  const ModelConfig m = small(ResidualMode::AttnRes, 2);
  Chunk c;
  chunk_init(c, m, 0, m.num_sublayers(), 1, 1);
  const float* base = c.params.data();
  const float* gbase = c.grads.data();
  EXPECT_EQ(c.p.embed.f, base + c.layout.find("embed.weight")->offset);
  EXPECT_EQ(c.p.lm_head.f, base + c.layout.find("lm_head.weight")->offset);
  EXPECT_EQ(c.g.out_query, gbase + c.layout.find("output_res.query")->offset);
  EXPECT_EQ(c.p.sub[2].q.f, base + c.layout.find("layers.2.attn.q.weight")->offset);
  EXPECT_EQ(c.g.sub[3].down, gbase + c.layout.find("layers.3.mlp.down.weight")->offset);
  EXPECT_FALSE(c.p.sub[3].q);  // an MLP sublayer has no attention weights
  EXPECT_EQ(c.p.sub[1].res_norm.f, base + c.layout.find("layers.1.res.norm.weight")->offset);
  EXPECT_EQ(c.p.sub[1].res_norm.h, nullptr);
}

// A bf16 chunk reads every weight in bf16, at the layout's offsets; the
// gains and pseudo-queries also widened to fp32, packed in layout order.
// Weights written from fp32 masters are those masters rounded.
TEST(ChunkMemory, Bf16ChunkReadsItsMastersRounded) {
  const ModelConfig m = in_bf16(small(ResidualMode::AttnRes, 2));
  Chunk c;
  chunk_init(c, m, 0, m.num_sublayers(), 1, 1);
  EXPECT_EQ(c.params.size(), 0u);
  const kernels::bf16* hbase = c.compute.data();
  EXPECT_EQ(c.p.lm_head.h, hbase + c.layout.find("lm_head.weight")->offset);
  EXPECT_EQ(c.p.lm_head.f, nullptr);
  EXPECT_EQ(c.p.sub[2].q.h, hbase + c.layout.find("layers.2.attn.q.weight")->offset);
  EXPECT_EQ(c.p.sub[1].res_norm.h, hbase + c.layout.find("layers.1.res.norm.weight")->offset);
  EXPECT_EQ(c.p.embed.f, nullptr);
  EXPECT_EQ(c.p.sub[0].norm.f, c.widened.data());  // the first vector of the layout

  std::vector<float> masters(c.layout.total);
  for (size_t i = 0; i < masters.size(); ++i) masters[i] = 1.0f + float(i % 977) * 1e-4f;  // not bf16 values
  chunk_write_weights(c, masters.data(), 0, masters.size());
  chunk_widen_vectors(c);
  const std::vector<float> read = chunk_weights_to_host(c);
  for (size_t i = 0; i < masters.size(); ++i) ASSERT_EQ(read[i], kernels::round_bf16(masters[i])) << i;
  const std::pair<const char*, Weight> vectors[] = {
      {"layers.1.res.query", c.p.sub[1].res_query}, {"layers.4.norm.weight", c.p.sub[4].norm},
      {"output_res.norm.weight", c.p.out_norm}};
  for (const auto& [name, w] : vectors) {
    const TensorSpec& t = *c.layout.find(name);
    const std::vector<float> widened = kernels::to_host(c.dev, w.f, t.numel);
    for (size_t i = 0; i < t.numel; ++i) ASSERT_EQ(widened[i], read[t.offset + i]) << name << " " << i;
  }
}
