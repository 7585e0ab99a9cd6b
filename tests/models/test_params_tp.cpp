// Tensor-parallel parameter shards (DESIGN §6): Megatron's splits, and
// initialisation that does not depend on tp.
#include <gtest/gtest.h>

#include <vector>

#include "models/params.h"

using namespace attnres;

namespace {

ModelConfig model(ResidualMode mode) {
  ModelConfig m;
  m.vocab_size = 256;
  m.d_model = 32;
  m.n_layers = 2;  // L = 4 sublayers
  m.n_heads = 4;
  m.d_ff = 48;
  m.seq_len = 8;
  m.mode = mode;
  m.block_size = 2;
  return m;
}

// Copies shard `t` (local, row-major) into its place in the whole tensor.
void place_shard(std::vector<float>& whole, const TensorSpec& t, const float* shard) {
  const size_t cols = t.global_shape.size() == 2 ? size_t(t.global_shape[1]) : t.numel;
  const size_t rows = t.numel / size_t(t.shape.back()), w = size_t(t.shape.back());
  const size_t row0 = t.shard_dim == 0 ? size_t(t.shard_offset) : 0;
  const size_t col0 = t.shard_dim == 1 ? size_t(t.shard_offset) : 0;
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < w; ++c) whole[(row0 + r) * cols + col0 + c] = shard[r * w + c];
}

}  // namespace

TEST(TensorParallelParams, MegatronSplits) {
  const ModelConfig m = model(ResidualMode::AttnRes);
  const ParamLayout l = make_param_layout(m, 0, m.num_sublayers(), {1, 4});
  auto spec = [&](const char* name) { return *l.find(name); };
  EXPECT_EQ(spec("embed.weight").shape, (std::vector<int64_t>{64, 32}));     // vocabulary rows
  EXPECT_EQ(spec("embed.weight").shard_offset, 64);
  EXPECT_EQ(spec("layers.0.attn.q.weight").shape, (std::vector<int64_t>{8, 32}));  // one head of 4
  EXPECT_EQ(spec("layers.0.attn.o.weight").shape, (std::vector<int64_t>{32, 8}));  // input columns
  EXPECT_EQ(spec("layers.0.attn.o.weight").shard_dim, 1);
  EXPECT_EQ(spec("layers.1.mlp.gate.weight").shape, (std::vector<int64_t>{12, 32}));  // rows of F
  EXPECT_EQ(spec("layers.1.mlp.down.weight").shape, (std::vector<int64_t>{32, 12}));
  EXPECT_EQ(spec("layers.1.mlp.down.weight").shard_offset, 12);
  EXPECT_EQ(spec("lm_head.weight").shape, (std::vector<int64_t>{64, 32}));
  for (const char* replicated : {"layers.0.norm.weight", "layers.0.res.query", "layers.0.res.norm.weight",
                                 "output_res.query", "final_norm.weight"}) {
    EXPECT_FALSE(spec(replicated).sharded()) << replicated;
    EXPECT_EQ(spec(replicated).shape, (std::vector<int64_t>{32})) << replicated;
  }
}

// The tp = 2 and tp = 4 shards of every tensor, put together, equal the
// tp = 1 tensor bit for bit.
TEST(TensorParallelParams, ShardsReassembleTheUnshardedInitBitForBit) {
  for (ResidualMode mode : {ResidualMode::Standard, ResidualMode::AttnRes}) {
    const ModelConfig m = model(mode);
    const int L = m.num_sublayers();
    const ParamLayout whole = make_param_layout(m, 0, L);
    std::vector<float> ref(whole.total);
    init_params(m, whole, ref.data(), 1234);
    for (int tp : {2, 4}) {
      std::vector<float> rebuilt(whole.total, -7.0f);  // a value init never draws
      for (int r = 0; r < tp; ++r) {
        const ParamLayout l = make_param_layout(m, 0, L, {r, tp});
        std::vector<float> shard(l.total);
        init_params(m, l, shard.data(), 1234);
        for (const TensorSpec& t : l.tensors) {
          const TensorSpec* w = whole.find(t.name);
          ASSERT_NE(w, nullptr) << t.name;
          std::vector<float> dst(rebuilt.begin() + long(w->offset), rebuilt.begin() + long(w->offset + w->numel));
          place_shard(dst, t, shard.data() + t.offset);
          std::copy(dst.begin(), dst.end(), rebuilt.begin() + long(w->offset));
        }
      }
      for (const TensorSpec& t : whole.tensors)
        for (size_t i = 0; i < t.numel; ++i)
          ASSERT_EQ(rebuilt[t.offset + i], ref[t.offset + i]) << t.name << " tp " << tp << " element " << i;
    }
  }
}
