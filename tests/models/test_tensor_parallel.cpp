// Tensor and sequence parallelism (DESIGN §6): Megatron's splits and an
// initialisation that does not depend on tp; and tp ranks run as threads with
// in-process collectives, whose loss and gradients, put back together, match
// the tp = 1 chunk's.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <thread>
#include <vector>

#include "kernels/memory.h"
#include "models/chunk.h"
#include "tests/models/thread_collectives.h"

using namespace attnres;
namespace k = attnres::kernels;

namespace {

ModelConfig model(ResidualMode mode, int S) {
  ModelConfig m;
  m.vocab_size = 256;
  m.d_model = 32;
  m.n_layers = 2;  // L = 4 sublayers
  m.n_heads = 4;
  m.d_ff = 48;
  m.seq_len = 8;
  m.mode = mode;
  m.block_size = S;
  return m;
}
constexpr int kBatch = 2;
constexpr uint64_t kSeed = 7;

struct RankResult {
  double loss = 0;
  ParamLayout layout;
  std::vector<float> grads;
};

// One tp rank: the model as chunks [bounds[i], bounds[i+1]), a forward and a
// backward of one microbatch, then the replicated gradients summed over tp.
RankResult run_rank(const ModelConfig& m, const std::vector<int>& bounds, TensorParallel tp) {
  const int N = kBatch * m.seq_len;
  std::mt19937 rng(3);
  std::vector<int32_t> tok(static_cast<size_t>(N)), tgt(static_cast<size_t>(N));
  for (int i = 0; i < N; ++i) tok[size_t(i)] = int32_t(rng() % 256), tgt[size_t(i)] = int32_t(rng() % 256);
  tgt[5] = -1;  // a masked row
  const size_t C = bounds.size() - 1;
  std::vector<Chunk> chunks(C);
  std::vector<ChunkActs> acts(C);
  for (size_t i = 0; i < C; ++i) {
    chunk_init(chunks[i], m, bounds[i], bounds[i + 1], kBatch, kSeed, {}, tp);
    acts_init(acts[i], chunks[i]);
    // Non-zero pseudo-queries and non-unit gains (the same on every rank).
    std::vector<float> p = chunk_weights_to_host(chunks[i]);
    std::normal_distribution<float> n(0.0f, 0.5f);
    std::mt19937 r2(11 + unsigned(i));
    for (const TensorSpec& t : chunks[i].layout.tensors)
      if (!t.sharded() && t.shape.size() == 1)
        for (size_t e = 0; e < t.numel; ++e) p[t.offset + e] = (t.name.ends_with("query") ? 0.0f : 1.0f) + n(r2);
    chunk_load_weights(chunks[i], p.data());
  }
  RankResult res;
  ResidualState s;
  for (size_t i = 0; i < C; ++i) {
    res.loss += chunk_forward(chunks[i], acts[i], tok.data(), tgt.data(), s);
    s = acts[i].out;
  }
  const size_t Nrd = size_t(chunks[0].dims.Nr) * m.d_model;
  std::vector<k::DeviceBuffer<float>> store;
  ResidualState dout;
  for (int src = 0; m.attnres() && src < sources_at(m, m.num_sublayers()); ++src) {
    store.emplace_back(k::Device{}, Nrd);
    k::zero(k::Device{}, store.back().data(), Nrd);
    dout.sources.push_back(store.back().data());
  }
  for (size_t i = C; i-- > 0;) {
    ResidualState din;
    chunk_backward_input(chunks[i], acts[i], tok.data(), tgt.data(), 1.0f / float(N), dout, din);
    chunk_backward_weight(chunks[i], acts[i]);
    chunk_reduce_replicated_grads(chunks[i]);
    dout = din;
  }
  // All chunks' tensors in one layout, in global order.
  for (Chunk& c : chunks) {
    const std::vector<float> g = k::to_host(c.dev, c.grads.data(), c.grads.size());
    for (TensorSpec t : c.layout.tensors) {
      t.offset += res.grads.size();
      res.layout.tensors.push_back(t);
    }
    res.grads.insert(res.grads.end(), g.begin(), g.end());
  }
  return res;
}

// The whole tensor of `name` from every rank's shard.
std::vector<float> whole_grad(const std::vector<RankResult>& ranks, const std::string& name) {
  const TensorSpec& t0 = *ranks[0].layout.find(name);
  size_t numel = 1;
  for (int64_t e : t0.global_shape) numel *= size_t(e);
  std::vector<float> out(numel);
  for (const RankResult& r : ranks) {
    const TensorSpec& t = *r.layout.find(name);
    shard_to_whole(out.data(), t, r.grads.data() + t.offset);
  }
  return out;
}

void expect_tp_matches(ResidualMode mode, int S, const std::vector<int>& bounds, int tp, bool sp) {
  const ModelConfig m = model(mode, S);
  const RankResult ref = run_rank(m, bounds, {});
  std::vector<RankResult> ranks(static_cast<size_t>(tp));
  attnres::testing::ThreadGroup group(tp);
  std::vector<std::thread> threads;
  for (int r = 0; r < tp; ++r)
    threads.emplace_back([&, r] {
      attnres::testing::ThreadCollectives coll(group, r);
      ranks[size_t(r)] = run_rank(m, bounds, {{r, tp}, sp, &coll});
    });
  for (auto& t : threads) t.join();
  const std::string what = std::string(residual_mode_name(mode)) + " S=" + std::to_string(S) +
                           " tp=" + std::to_string(tp) + (sp ? " sp" : "");
  for (const RankResult& r : ranks) EXPECT_NEAR(r.loss, ref.loss, 1e-5 * std::fabs(ref.loss)) << what;
  for (const TensorSpec& t : ref.layout.tensors) {
    const std::vector<float> got = whole_grad(ranks, t.name);
    double diff = 0, norm = 0;
    for (size_t i = 0; i < t.numel; ++i) {
      const double a = ref.grads[t.offset + i];
      diff += (got[i] - a) * (got[i] - a), norm += a * a;
    }
    EXPECT_LE(std::sqrt(diff), 1e-4 * std::sqrt(norm) + 1e-9) << what << " " << t.name;
  }
  // Replicated tensors end up equal on every rank.
  for (const TensorSpec& t : ranks[0].layout.tensors) {
    if (t.sharded()) continue;
    for (const RankResult& r : ranks)
      for (size_t i = 0; i < t.numel; ++i)
        ASSERT_EQ(r.grads[r.layout.find(t.name)->offset + i], ranks[0].grads[t.offset + i]) << what << " " << t.name;
  }
}

}  // namespace

TEST(TensorParallel, StandardMatchesOneRank) {
  for (int tp : {2, 4})
    for (bool sp : {false, true}) expect_tp_matches(ResidualMode::Standard, 1, {0, 4}, tp, sp);
}
TEST(TensorParallel, FullAttnResMatchesOneRank) {
  for (int tp : {2, 4})
    for (bool sp : {false, true}) expect_tp_matches(ResidualMode::AttnRes, 1, {0, 4}, tp, sp);
}
TEST(TensorParallel, BlockAttnResMatchesOneRank) {
  for (int tp : {2, 4})
    for (bool sp : {false, true}) expect_tp_matches(ResidualMode::AttnRes, 2, {0, 4}, tp, sp);
}
// Chunks that hand token-sharded sources and a partial sum to the next.
TEST(TensorParallel, SplitChunksMatchOneRank) {
  for (bool sp : {false, true}) {
    expect_tp_matches(ResidualMode::AttnRes, 2, {0, 1, 3, 4}, 2, sp);
    expect_tp_matches(ResidualMode::Standard, 1, {0, 2, 4}, 2, sp);
  }
}

TEST(TensorParallelParams, MegatronSplits) {
  const ModelConfig m = model(ResidualMode::AttnRes, 2);
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
    const ModelConfig m = model(mode, 2);
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
          shard_to_whole(rebuilt.data() + w->offset, t, shard.data() + t.offset);
        }
      }
      for (const TensorSpec& t : whole.tensors)
        for (size_t i = 0; i < t.numel; ++i)
          ASSERT_EQ(rebuilt[t.offset + i], ref[t.offset + i]) << t.name << " tp " << tp << " element " << i;
    }
  }
}
