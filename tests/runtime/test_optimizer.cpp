// The optimizer owns the fp32 master weights (DESIGN §11): what it
// allocates is what the memory plan counts, a bf16 run's step changes the
// masters by fp32 amounts that the chunk's bf16 weights only follow rounded,
// and an fp32 run's masters are the chunk's weights themselves.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/memory.h"
#include "models/chunk.h"
#include "parallel/communicator.h"
#include "parallel/memory_plan.h"
#include "parallel/partition.h"
#include "parallel/schedule.h"
#include "runtime/optimizer.h"

using namespace attnres;

namespace {

ModelConfig tiny(kernels::DType precision) {
  ModelConfig m;
  m.vocab_size = 64, m.d_model = 16, m.n_layers = 2, m.n_heads = 2, m.d_ff = 24, m.seq_len = 8;
  m.mode = ResidualMode::AttnRes;
  m.block_size = 2;
  m.precision = m.hop_dtype = precision;
  return m;
}

}  // namespace

// One process, and ZeRO-1's second part of three: the optimizer's bytes
// equal the plan's `adamw` (m, v, and a bf16 run's masters of the part).
TEST(Optimizer, AllocatesWhatTheMemoryPlanCounts) {
  for (kernels::DType precision : {kernels::DType::F32, kernels::DType::BF16})
    for (int parts : {1, 3}) {
      const ModelConfig m = tiny(precision);
      const std::string what = std::string(kernels::dtype_name(precision)) + " parts " + std::to_string(parts);
      const Partition part = make_partition(m, 1, 1, "");
      const RankMemoryPlan plan =
          plan_rank_memory(m, part, make_schedule("1f1b", 1, 2, 1), 0, 1, {}, {}, {parts == 1 ? 0 : 1, parts});
      Chunk c;
      chunk_init(c, m, 0, m.num_sublayers(), 1, 7);
      const std::vector<size_t> split = split_evenly(c.layout.total, parts);
      const size_t index = parts == 1 ? 0 : 1;
      const size_t before = kernels::allocated_bytes(c.dev);
      AdamW a;
      a.init(c, part_offset(split, int(index)), split[index]);
      EXPECT_EQ(kernels::allocated_bytes(c.dev) - before, plan.total.adamw) << what;
    }
}

// fp32: the masters are the chunk's weights, stepped in place.
TEST(Optimizer, Fp32MastersAreTheChunksWeights) {
  Chunk c;
  chunk_init(c, tiny(kernels::DType::F32), 0, 4, 1, 7);
  AdamW a;
  a.init(c, 0, c.layout.total);
  EXPECT_EQ(a.master, c.params.data());
  EXPECT_EQ(a.own_masters.size(), 0u);
}

// bf16: the optimizer's masters take updates far below a bf16 step of the
// weights; the chunk reads them rounded after chunk_write_weights, and a
// load puts the masters back exactly and the weights rounded.
TEST(Optimizer, Bf16MastersKeepWhatTheWeightsRoundAway) {
  Chunk c;
  chunk_init(c, tiny(kernels::DType::BF16), 0, 4, 1, 7);
  AdamW a;
  a.init(c, 0, c.layout.total);
  const std::vector<float> initial = kernels::to_host(c.dev, a.master, a.count());
  EXPECT_EQ(initial, chunk_weights_to_host(c));  // the initial masters are the bf16 weights

  TrainConfig t;
  t.weight_decay = 0.0f;
  const std::vector<float> grads(c.layout.total, 1.0f);
  kernels::DeviceBuffer<float> g(c.dev, grads.size());
  kernels::from_host(c.dev, g.data(), grads.data(), grads.size());
  // Adam's first step moves every master by the lr: 1e-6 is far below the
  // bf16 spacing of the weights (N(0, 0.02), gains 1) except near 0.
  a.step(c.layout, g.data(), 1e-6f, t);
  const std::vector<float> stepped = kernels::to_host(c.dev, a.master, a.count());
  size_t moved = 0, weights_moved = 0;
  chunk_write_weights(c, a.master, 0, a.count());
  const std::vector<float> weights = chunk_weights_to_host(c);
  for (size_t i = 0; i < stepped.size(); ++i) {
    moved += stepped[i] != initial[i];
    weights_moved += weights[i] != initial[i];
    ASSERT_EQ(weights[i], kernels::round_bf16(stepped[i])) << i;
  }
  EXPECT_EQ(moved, stepped.size());
  EXPECT_LT(weights_moved, stepped.size() / 2) << "a 1e-6 step should mostly round away in bf16";

  AdamW b;
  b.init(c, 0, c.layout.total);
  b.load(c, stepped.data());
  EXPECT_EQ(kernels::to_host(c.dev, b.master, b.count()), stepped);
  EXPECT_EQ(chunk_weights_to_host(c), weights);
}
