// The memory plan (parallel/memory_plan.h) equals, byte for byte, what a
// PipelineExecutor allocates on each rank, measured with the allocator's
// counter: standard, Full (S = 1) and Block AttnRes, on several layouts and
// schedules, every rank of each.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/memory.h"
#include "parallel/executor.h"
#include "parallel/memory_plan.h"
#include "parallel/partition.h"
#include "parallel/schedule.h"

namespace attnres {
namespace {

// A pipeline communicator of the right size that must never be used: the
// executor's constructor and destructor send nothing.
class UnusedCommunicator : public Communicator {
 public:
  UnusedCommunicator(int rank, int size) : rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Request isend(const std::vector<TensorRef>&, int, MessageTag) override { fail(); }
  Request irecv(const std::vector<TensorRef>&, int, MessageTag) override { fail(); }
  void wait(Request&) override { fail(); }
  bool test(Request&) override { fail(); }
  void allreduce_sum(float*, size_t) override { fail(); }
  Request iallreduce_sum(float*, size_t) override { fail(); }
  void allreduce_sum(double*, size_t) override { fail(); }
  Request ireduce_scatter_sum(float*, float*, const std::vector<size_t>&) override { fail(); }
  void allgather_parts(TensorRef, const std::vector<size_t>&) override { fail(); }
  void broadcast(void*, size_t, int) override { fail(); }
  std::vector<std::string> gather(const void*, size_t, int) override { fail(); }
  std::vector<std::string> allgather(const void*, size_t) override { fail(); }
  void barrier() override { fail(); }

 private:
  [[noreturn]] static void fail() { throw std::logic_error("UnusedCommunicator was used"); }
  int rank_, size_;
};

ModelConfig model(ResidualMode mode, int S) {
  ModelConfig m;
  m.vocab_size = 64;
  m.d_model = 16;
  m.n_layers = 4;  // L = 8 sublayers
  m.n_heads = 4;  // tp = 4 takes one head each
  m.d_ff = 24;
  m.seq_len = 8;
  m.mode = mode;
  m.block_size = S;
  return m;
}

struct Layout {
  int P, V, M;
  std::string schedule, layout;
  HopCaching cache;
};

// Tensor-parallel collectives that must never be used: construction sends nothing.
class UnusedCollectives final : public TensorCollectives {
 public:
  explicit UnusedCollectives(int size) : size_(size) {}
  int rank() const override { return 0; }
  int size() const override { return size_; }
  void allreduce_sum(float*, size_t) override { fail(); }
  void allreduce_max(float*, size_t) override { fail(); }
  void allgather(float*, const float*, size_t) override { fail(); }
  void allgather(kernels::bf16*, const kernels::bf16*, size_t) override { fail(); }
  void reduce_scatter_sum(float*, const float*, size_t) override { fail(); }

 private:
  [[noreturn]] static void fail() { throw std::logic_error("UnusedCollectives was used"); }
  int size_;
};

void expect_plan_matches_allocation(const ModelConfig& m, const Layout& l, int micro_batch,
                                    const TensorParallel& tp = {}, ZeroShard zero = {}) {
  const Partition part = make_partition(m, l.P, l.V, l.layout);
  const kernels::Device dev;
  for (int r = 0; r < l.P; ++r) {
    const std::string what = std::string(residual_mode_name(m.mode)) + " S=" + std::to_string(m.block_size) +
                             " " + l.schedule + " P=" + std::to_string(l.P) + " V=" + std::to_string(l.V) +
                             " layout \"" + l.layout + "\" cache=" + std::to_string(l.cache.forward) +
                             std::to_string(l.cache.backward) +
                             " rank " + std::to_string(r) + " tp " + std::to_string(tp.tp.size) +
                             (tp.sequence_parallel ? " sp" : "") + " zero part " + std::to_string(zero.index) +
                             "/" + std::to_string(zero.parts);
    Schedule sched = make_schedule(l.schedule, l.P, l.M, l.V);
    const RankMemoryPlan plan = plan_rank_memory(m, part, sched, r, micro_batch, l.cache, tp, zero);
    UnusedCommunicator pipe(r, l.P), data(zero.index, zero.parts);
    const size_t before = kernels::allocated_bytes(dev);
    {
      PipelineExecutor exec(m, part, std::move(sched), r, l.P > 1 ? &pipe : nullptr,
                            zero.parts > 1 ? &data : nullptr, micro_batch, 1, l.cache, dev, tp);
      if (zero.parts > 1) exec.data_parallel().shard();
      EXPECT_EQ(kernels::allocated_bytes(dev) - before, plan.total.executor()) << what;
      ASSERT_EQ(exec.chunks().size(), plan.chunks.size()) << what;
      for (size_t i = 0; i < plan.chunks.size(); ++i) {
        const Chunk& c = exec.chunks()[i];
        EXPECT_EQ((c.params.size() + c.widened.size()) * sizeof(float) + c.compute.size() * sizeof(kernels::bf16),
                  plan.chunks[i].bytes.params) << what;
        // The optimizer, as the trainer sizes it: the moments of the part the
        // rank updates, and a bf16 run's masters of it (tests/runtime checks
        // AdamW's allocation against this plan).
        EXPECT_EQ((m.bf16() ? 3 : 2) * exec.data_parallel().part(i).count * sizeof(float), plan.chunks[i].bytes.adamw)
            << what;
        EXPECT_GE(plan.chunks[i].slots, plan.chunks[i].chunk == 0 ? 1 : 2) << what;  // one live microbatch (+ 1)
      }
    }
    EXPECT_EQ(kernels::allocated_bytes(dev), before) << what << ": the executor leaked device memory";
  }
}

const std::vector<Layout> kLayouts = {
    {1, 1, 3, "gpipe", "", {}},
    {1, 1, 4, "1f1b", "8", {}},
    {1, 2, 2, "interleaved", "4,4", {}},          // two chunks on the one rank
    {1, 2, 2, "interleaved", "3,5", {true, true}},
    {2, 1, 4, "1f1b", "", {}},
    {2, 1, 4, "zb-h1", "3,5", {}},
    {2, 2, 4, "interleaved", "2,2,1,3", {}},
    {2, 2, 4, "interleaved", "2,2,1,3", {true, false}},  // cross-stage caching, exact gradient sums
    {2, 2, 4, "interleaved", "2,2,1,3", {true, true}},   // and local ones
    {4, 1, 4, "gpipe", "1,3,2,2", {}},
    {4, 2, 4, "interleaved", "1,1,1,1,1,1,1,1", {true, false}},
    {4, 2, 4, "interleaved", "1,1,1,1,1,1,1,1", {true, true}},
};

TEST(MemoryPlan, EqualsExecutorAllocationStandard) {
  for (const Layout& l : kLayouts) expect_plan_matches_allocation(model(ResidualMode::Standard, 1), l, 2);
}

TEST(MemoryPlan, EqualsExecutorAllocationFullAttnRes) {
  for (const Layout& l : kLayouts) expect_plan_matches_allocation(model(ResidualMode::AttnRes, 1), l, 2);
}

TEST(MemoryPlan, EqualsExecutorAllocationBlockAttnRes) {
  for (int S : {2, 3})  // blocks of 2; blocks of 3 with a short last block (layouts cut them)
    for (const Layout& l : kLayouts) expect_plan_matches_allocation(model(ResidualMode::AttnRes, S), l, 3);
}

// Tensor-parallel shards: the plan still equals the allocation (heads, F and
// the vocabulary split; under sequence parallelism residual rows and hop
// buffers too, plus the collectives' staging buffers).
TEST(MemoryPlan, EqualsExecutorAllocationTensorParallel) {
  for (int t : {2, 4}) {
    UnusedCollectives coll(t);
    for (bool sp : {false, true})
      for (ResidualMode mode : {ResidualMode::Standard, ResidualMode::AttnRes})
        for (const Layout& l : kLayouts) expect_plan_matches_allocation(model(mode, 2), l, 2, {{0, t}, sp, &coll});
  }
}

// Selective, block and full recomputation: the plan equals the allocation too.
TEST(MemoryPlan, EqualsExecutorAllocationRecompute) {
  for (Recompute r : {Recompute::Selective, Recompute::Block, Recompute::Full})
    for (ResidualMode mode : {ResidualMode::Standard, ResidualMode::AttnRes})
      for (int S : {1, 3}) {
        if (r == Recompute::Block && mode == ResidualMode::Standard) continue;
        ModelConfig m = model(mode, S);
        m.recompute = r;
        for (const Layout& l : kLayouts) expect_plan_matches_allocation(m, l, 2);
      }
}

// bf16 (bf16 weights with their widened vectors, bf16 activations in the
// arena and their fp32 staging in scratch, bf16 hop wire buffers), and flash
// attention (log-sum-exp instead of probabilities): the plan equals the
// allocation.
TEST(MemoryPlan, EqualsExecutorAllocationBf16AndFlash) {
  UnusedCollectives coll(2);
  for (ResidualMode mode : {ResidualMode::Standard, ResidualMode::AttnRes})
    for (Recompute r : {Recompute::None, Recompute::Selective, Recompute::Full}) {
      ModelConfig m = model(mode, 2);
      m.precision = m.hop_dtype = kernels::DType::BF16;
      m.recompute = r;
      for (const Layout& l : kLayouts) {
        expect_plan_matches_allocation(m, l, 2);
        if (r == Recompute::None) expect_plan_matches_allocation(m, l, 2, {{0, 2}, true, &coll});
      }
      m.attention = Attention::Flash;  // Selective keeps nothing less under flash
      expect_plan_matches_allocation(m, kLayouts[0], 2);
    }
}

// ZeRO-1 over 2 and 3 dp ranks, each rank's part (3 does not divide the
// chunks' parameter counts): the plan adds the buffer of the part's summed
// gradients and sizes AdamW for the part.
TEST(MemoryPlan, EqualsExecutorAllocationZeroOne) {
  for (int parts : {2, 3})
    for (int index = 0; index < parts; ++index)
      for (const Layout& l : kLayouts) expect_plan_matches_allocation(model(ResidualMode::AttnRes, 2), l, 2, {}, {index, parts});
}

// The slot count is the peak of live microbatches, + 1 past chunk 0 (its
// input may arrive while the slots are full): GPipe holds all M, 1F1B at most
// P - rank on rank `rank`.
TEST(MemoryPlan, ActivationSlots) {
  const Schedule gpipe = make_schedule("gpipe", 4, 6, 1);
  const Schedule f1b = make_schedule("1f1b", 4, 6, 1);
  for (int r = 0; r < 4; ++r) {
    const std::vector<int> g = activation_slots(gpipe, r), o = activation_slots(f1b, r);
    const int extra = r > 0 ? 1 : 0;
    for (int c = 0; c < 4; ++c) {
      EXPECT_EQ(g[size_t(c)], c == r ? 6 + extra : 0) << "gpipe rank " << r << " chunk " << c;
      EXPECT_EQ(o[size_t(c)], c == r ? 4 - r + extra : 0) << "1f1b rank " << r << " chunk " << c;
    }
  }
}

}  // namespace
}  // namespace attnres
