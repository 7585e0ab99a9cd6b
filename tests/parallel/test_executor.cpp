// The pipeline executor in one process: the ranks of a pipeline (and of its
// data-parallel replicas) are threads joined by FakeNetworks, and what they
// compute is compared with the one-rank executor bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "parallel/executor.h"
#include "parallel/partition.h"
#include "parallel/schedule.h"
#include "tests/parallel/fake_communicator.h"
#include "tests/parallel/v_shape_schedule.h"

namespace attnres {
namespace {

constexpr int kBatch = 2;  // sequences per microbatch
constexpr uint64_t kSeed = 5;

ModelConfig tiny(ResidualMode mode, int S) {
  ModelConfig m;
  m.vocab_size = 64;
  m.d_model = 16;
  m.n_layers = 2;  // L = 4 sublayers: up to 4 chunks
  m.n_heads = 2;
  m.d_ff = 24;
  m.seq_len = 8;
  m.mode = mode;
  m.block_size = S;
  return m;
}

struct Case {
  std::string name;
  ModelConfig model;
};
std::vector<Case> modes() {
  return {{"standard", tiny(ResidualMode::Standard, 1)},
          {"full attnres", tiny(ResidualMode::AttnRes, 1)},
          {"block attnres S=2", tiny(ResidualMode::AttnRes, 2)}};
}

// Token and target ids of M microbatches.
struct Batches {
  std::vector<std::vector<int32_t>> tokens, targets;
  std::vector<const int32_t*> pointers(const std::vector<std::vector<int32_t>>& ids) const {
    std::vector<const int32_t*> p;
    for (const auto& v : ids) p.push_back(v.data());
    return p;
  }
};
Batches make_batches(const ModelConfig& m, int M, uint32_t seed) {
  std::mt19937 rng(seed);
  auto ids = [&] {
    std::vector<int32_t> v(size_t(kBatch) * m.seq_len);
    for (int32_t& x : v) x = int32_t(rng() % uint32_t(m.vocab_size));
    return v;
  };
  Batches b;
  for (int i = 0; i < M; ++i) b.tokens.push_back(ids()), b.targets.push_back(ids());
  return b;
}

// What one pipeline produced: each microbatch's loss sum (from the rank of the
// last chunk) and every gradient, by global tensor name.
struct Result {
  std::vector<double> losses;
  std::map<std::string, std::vector<float>> grads;
};

struct Outcome {
  std::vector<Result> replicas;  // per dp replica
  std::vector<std::string> problems;
  std::vector<std::string> p2p_order;  // sends and receives issued in different orders (NCCL would hang)
  int messages = 0;              // received whole, over every pipeline
  bool reductions_in_list_order = true;
};

// Runs `steps` steps of `sched` on dp × P threads: replica d feeds batches[d]
// through its own pipeline; the ranks of one pipeline stage form a dp group.
Outcome run_threads(const ModelConfig& m, const Schedule& sched, const std::vector<Batches>& batches, int steps,
                    HopCaching cache = {}) {
  const int P = sched.P, dp = int(batches.size());
  const Partition part = make_partition(m, P, sched.V, "");
  std::vector<std::unique_ptr<FakeNetwork>> pipes, groups;
  for (int d = 0; d < dp; ++d) pipes.push_back(std::make_unique<FakeNetwork>(P));
  for (int p = 0; p < P; ++p) groups.push_back(std::make_unique<FakeNetwork>(dp));
  auto fail_all = [&] {
    for (auto& n : pipes) n->fail();
    for (auto& n : groups) n->fail();
  };

  std::vector<Result> per_thread(size_t(dp * P));
  std::vector<std::vector<const float*>> reduce_order(size_t(dp * P));  // grads, by REDUCE_GRADS in the list
  std::vector<std::string> errors(size_t(dp * P));
  std::vector<std::thread> threads;
  for (int d = 0; d < dp; ++d)
    for (int p = 0; p < P; ++p)
      threads.emplace_back([&, d, p] {
        const size_t me = size_t(d * P + p);
        try {
          FakeCommunicator pipe(*pipes[size_t(d)], p), data(*groups[size_t(p)], d);
          PipelineExecutor e(m, part, sched, p, P > 1 ? &pipe : nullptr, dp > 1 ? &data : nullptr, kBatch, kSeed,
                             cache);
          const float scale = 1.0f / float(sched.M * kBatch * m.seq_len);
          const Batches& feed = batches[size_t(d)];
          const std::vector<const int32_t*> tokens = feed.pointers(feed.tokens), targets = feed.pointers(feed.targets);
          for (int s = 0; s < steps; ++s) {
            std::vector<double> l = e.run(tokens, targets, scale);
            if (e.holds_last_chunk()) per_thread[me].losses.insert(per_thread[me].losses.end(), l.begin(), l.end());
          }
          for (const Chunk& c : e.chunks())
            for (const TensorSpec& t : c.layout.tensors)
              per_thread[me].grads[t.name] = kernels::to_host(c.dev, c.grads.data() + t.offset, t.numel);
          const std::vector<int> mine = sched.chunks_of(p);  // e.chunks() is in this order
          for (const Action& a : sched.ranks[size_t(p)])
            if (a.op == Op::REDUCE_GRADS)
              reduce_order[me].push_back(e.chunks()[size_t(std::find(mine.begin(), mine.end(), a.chunk) - mine.begin())].grads.data());
        } catch (const std::exception& ex) {
          errors[me] = "rank (dp " + std::to_string(d) + ", pp " + std::to_string(p) + "): " + ex.what();
          fail_all();
        }
      });
  for (std::thread& t : threads) t.join();

  Outcome out;
  for (const std::string& e : errors)
    if (!e.empty()) out.problems.push_back(e);
  out.replicas.resize(size_t(dp));
  for (int d = 0; d < dp; ++d) {
    for (int p = 0; p < P; ++p) {
      Result& r = per_thread[size_t(d * P + p)];
      if (!r.losses.empty()) out.replicas[size_t(d)].losses = r.losses;
      out.replicas[size_t(d)].grads.merge(r.grads);
      // Each rank started its chunks' reductions in the order of its list.
      if (dp > 1) out.reductions_in_list_order &= groups[size_t(p)]->reductions_of(d) == reduce_order[size_t(d * P + p)];
    }
    out.messages += pipes[size_t(d)]->messages_received();
    for (const std::string& s : pipes[size_t(d)]->p2p_order_mismatches()) out.p2p_order.push_back(s);
    for (const std::string& s : pipes[size_t(d)]->problems()) out.problems.push_back(s);
  }
  for (auto& g : groups)
    for (const std::string& s : g->problems()) out.problems.push_back(s);
  return out;
}

Result one_rank(const ModelConfig& m, const Batches& b, int steps) {
  const Outcome r = run_threads(m, make_schedule("1f1b", 1, int(b.tokens.size())), {b}, steps);
  EXPECT_TRUE(r.problems.empty());
  return r.replicas[0];
}

int sends_per_step(const Schedule& s) {
  int n = 0;
  for (const auto& l : s.ranks)
    for (const Action& a : l) n += a.op == Op::SEND_F || a.op == Op::SEND_B;
  return n;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += x + "\n";
  return s;
}

void expect_equal(const Result& want, const Result& got, const std::string& what) {
  ASSERT_EQ(got.losses.size(), want.losses.size()) << what;
  for (size_t i = 0; i < want.losses.size(); ++i) EXPECT_EQ(got.losses[i], want.losses[i]) << what << " loss " << i;
  ASSERT_EQ(got.grads.size(), want.grads.size()) << what;
  for (const auto& [name, g] : want.grads) {
    ASSERT_TRUE(got.grads.count(name)) << what << " lacks " << name;
    const std::vector<float>& h = got.grads.at(name);
    ASSERT_EQ(h.size(), g.size()) << what << " " << name;
    for (size_t i = 0; i < g.size(); ++i)
      ASSERT_EQ(h[i], g[i]) << what << " " << name << "[" << i << "]";
  }
}

// Every generator on 1, 2 and 4 ranks (with local copies when P = 1, V = 2),
// two steps each, against one rank running the whole model. Cross-stage
// caching with the gradients summed on the hops (parallel.cached_grads:
// exact) is bitwise too.
TEST(Executor, PipelinesEqualOneRankBitForBit) {
  const int M = 4, steps = 2;
  struct Layout {
    std::string schedule;
    int P, V;
    HopCaching cache;
  };
  const std::vector<Layout> layouts = {{"interleaved", 1, 2, {}}, {"gpipe", 2, 1, {}},
                                       {"1f1b", 2, 1, {}},        {"zb-h1", 2, 1, {}},
                                       {"interleaved", 2, 2, {}}, {"1f1b", 4, 1, {}},
                                       {"interleaved", 1, 2, {true, false}},
                                       {"interleaved", 2, 2, {true, false}}};
  for (const Case& c : modes()) {
    const Batches b = make_batches(c.model, M, 11);
    const Result ref = one_rank(c.model, b, steps);
    ASSERT_EQ(ref.losses.size(), size_t(M * steps));
    for (const Layout& l : layouts) {
      const std::string what = c.name + ", " + l.schedule + " P=" + std::to_string(l.P) + " V=" +
                               std::to_string(l.V) + (l.cache.forward ? " cached" : "");
      const Schedule s = make_schedule(l.schedule, l.P, M, l.V);
      const Outcome r = run_threads(c.model, s, {b}, steps, l.cache);
      EXPECT_TRUE(r.problems.empty()) << what << "\n" << joined(r.problems);
      EXPECT_EQ(r.messages, steps * sends_per_step(s)) << what;
      expect_equal(ref, r.replicas[0], what);
    }
  }
}

// Recomputation runs the same kernels on the same inputs: every loss and
// gradient is that of keeping the activations, under every schedule (zb-h1's
// split backward and interleaving with cached sources included). Blocks of 3
// sublayers make chunks that start inside a block and segments of 1 and 2.
TEST(Executor, RecomputeChangesNoBit) {
  const int M = 4;
  std::vector<Case> cases = modes();
  cases.push_back({"block attnres S=3", tiny(ResidualMode::AttnRes, 3)});
  for (const Case& c : cases) {
    const Batches b = make_batches(c.model, M, 17);
    for (Recompute r : {Recompute::Selective, Recompute::Block, Recompute::Full}) {
      if (r == Recompute::Block && !c.model.attnres()) continue;  // the standard residual has no blocks
      ModelConfig re = c.model;
      re.recompute = r;
      for (const Schedule& s : {make_schedule("1f1b", 1, M), make_schedule("gpipe", 2, M), make_schedule("zb-h1", 2, M),
                                make_schedule("interleaved", 2, M, 2), make_schedule("interleaved", 1, M, 2)})
        for (HopCaching cache : {HopCaching{}, HopCaching{true, false}}) {
          if (cache.forward && s.V == 1) continue;
          const std::string what = c.name + ", recompute " + recompute_name(r) + ", " + s.name + " P=" +
                                   std::to_string(s.P) + (cache.forward ? " cached" : "");
          const Outcome ref = run_threads(c.model, s, {b}, 2, cache), got = run_threads(re, s, {b}, 2, cache);
          ASSERT_TRUE(ref.problems.empty() && got.problems.empty()) << what << "\n" << joined(got.problems);
          expect_equal(ref.replicas[0], got.replicas[0], what);
        }
    }
  }
}

// NCCL pairs point-to-point calls by issue order: for every generator over a
// grid of P, M and V, each rank must issue its sends to a peer in the order
// that peer issues the matching receives (DESIGN §7). Two steps, so the
// receives a step posts ahead are covered too.
TEST(Executor, PeersIssueSendsAndReceivesInTheSameOrder) {
  ModelConfig m = tiny(ResidualMode::AttnRes, 3);
  m.n_layers = 4;  // L = 8: up to 8 chunks
  int layouts = 0;
  for (const std::string& name : schedule_names())
    for (int P : {2, 3, 4})
      for (int V : {1, 2})
        for (int M : {P, 2 * P, 2 * P + 1}) {
          if (P * V > m.num_sublayers()) continue;
          Schedule s;
          try {
            s = make_schedule(name, P, M, V);
          } catch (const std::invalid_argument&) {
            continue;  // not a layout this generator makes
          }
          const std::string what = name + " P=" + std::to_string(P) + " V=" + std::to_string(V) + " M=" + std::to_string(M);
          const Outcome r = run_threads(m, s, {make_batches(m, M, 13)}, 2);
          EXPECT_TRUE(r.problems.empty()) << what << "\n" << joined(r.problems);
          EXPECT_TRUE(r.p2p_order.empty()) << what << "\n" << joined(r.p2p_order);
          ++layouts;
        }
  EXPECT_GE(layouts, 20);
}

// A placement no generator makes (chunks 0,1,1,0): the executor takes its
// local chunks, peers and copies from the schedule alone.
// Busy time is the sum of the compute and copy actions' spans, timed by
// events (host timestamps here): the trace shows each of them once per run,
// in list order, never overlapping, and their durations add up to busy.
TEST(Executor, EventTimesAreTheTracedActions) {
  const ModelConfig m = tiny(ResidualMode::AttnRes, 2);
  const Schedule s = make_schedule("interleaved", 1, 2, 2);  // P = 1, two local chunks: COPY_F / COPY_B too
  const Partition part = make_partition(m, 1, 2, "");
  const Batches b = make_batches(m, s.M, 21);
  PipelineExecutor e(m, part, s, 0, nullptr, nullptr, kBatch, kSeed, {});
  e.enable_trace(true);
  int timed = 0;
  for (const Action& a : s.ranks[0]) timed += is_compute(a.op) || is_copy(a.op);
  for (int run = 0; run < 2; ++run) {
    e.trace().clear();
    e.run(b.pointers(b.tokens), b.pointers(b.targets), 0.5f);
    double sum_us = 0, end_us = -1;
    int n = 0;
    for (const TraceEvent& t : e.trace()) {
      if (std::string(t.category) != "compute" && std::string(t.category) != "copy") continue;
      EXPECT_GE(t.dur_us, 0.0) << t.name;
      // (event times are float milliseconds: a few ns of rounding)
      EXPECT_GE(t.start_us, end_us - 0.05) << t.name << " starts before the previous action ended";
      end_us = t.start_us + t.dur_us;
      sum_us += t.dur_us;
      ++n;
    }
    EXPECT_EQ(n, timed);
    EXPECT_NEAR(sum_us * 1e-6, e.busy_seconds(), 1e-9 + 1e-6 * e.busy_seconds());
    EXPECT_GT(e.busy_seconds(), 0.0);
    EXPECT_GE(e.idle_seconds(), 0.0);
  }
}

TEST(Executor, FollowsAnyPlacement) {
  const Schedule s = v_shape_schedule();
  for (const Case& c : modes()) {
    const Batches b = make_batches(c.model, s.M, 12);
    const Outcome r = run_threads(c.model, s, {b}, 2);
    EXPECT_TRUE(r.problems.empty()) << c.name << "\n" << joined(r.problems);
    EXPECT_EQ(r.messages, 2 * sends_per_step(s)) << c.name;
    expect_equal(one_rank(c.model, b, 2), r.replicas[0], c.name + ", v-shape");
  }
  // Cross-stage caching assumes chunk c−P runs where c does; this placement
  // breaks that, and the executor refuses rather than read the wrong sources.
  const ModelConfig m = tiny(ResidualMode::AttnRes, 1);
  const Partition part = make_partition(m, 2, 2, "");
  FakeNetwork net(2);
  FakeCommunicator pipe(net, 1);
  try {
    PipelineExecutor e(m, part, s, 1, &pipe, nullptr, kBatch, kSeed, {true, false});
    FAIL() << "expected std::logic_error";
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("the hop into chunk 2 caches chunk 0's sources"), std::string::npos)
        << e.what();
  }
}

// Cached gradients summed on the rank (parallel.cached_grads: local) change
// only the order in which a block's gradient is summed: losses stay exact,
// gradients agree to rounding.
TEST(Executor, CachedGradientsSummedLocallyMatchWithinRounding) {
  const int M = 4;
  const ModelConfig m = tiny(ResidualMode::AttnRes, 1);
  const Batches b = make_batches(m, M, 13);
  const Result ref = one_rank(m, b, 1);
  const Outcome r = run_threads(m, make_schedule("interleaved", 2, M, 2), {b}, 1, {true, true});
  ASSERT_TRUE(r.problems.empty()) << joined(r.problems);
  EXPECT_EQ(r.replicas[0].losses, ref.losses);
  for (const auto& [name, g] : ref.grads)
    for (size_t i = 0; i < g.size(); ++i)
      EXPECT_NEAR(r.replicas[0].grads.at(name)[i], g[i], 1e-5f * (1.0f + std::fabs(g[i]))) << name << "[" << i << "]";
}

// dp = 2 replicas of an interleaved pipeline: each rank starts a chunk's
// reduction at its REDUCE_GRADS, in list order. The network snapshots a rank's
// part when the reduction starts, so the sum equals the sum of the replicas'
// complete gradients only if every REDUCE_GRADS came after its chunk's last
// backward.
TEST(Executor, DataParallelReducesEachChunkAfterItsLastBackward) {
  const int M = 4;
  for (const Case& c : modes()) {
    const std::vector<Batches> b = {make_batches(c.model, M, 21), make_batches(c.model, M, 22)};
    const Result g0 = one_rank(c.model, b[0], 1), g1 = one_rank(c.model, b[1], 1);
    for (const Schedule& s : {make_schedule("interleaved", 2, M, 2), make_schedule("zb-h1", 2, M)}) {
      const std::string what = c.name + ", " + s.name;
      const Outcome r = run_threads(c.model, s, b, 1);
      ASSERT_TRUE(r.problems.empty()) << what << "\n" << joined(r.problems);
      EXPECT_TRUE(r.reductions_in_list_order) << what;
      for (int d = 0; d < 2; ++d) {
        const Result& got = r.replicas[size_t(d)];
        EXPECT_EQ(got.losses, (d == 0 ? g0 : g1).losses) << what;
        for (const auto& [name, x] : g0.grads) {
          const std::vector<float>& y = g1.grads.at(name);
          for (size_t i = 0; i < x.size(); ++i)
            ASSERT_EQ(got.grads.at(name)[i], x[i] + y[i]) << what << " replica " << d << " " << name << "[" << i << "]";
        }
      }
    }
  }
}

}  // namespace
}  // namespace attnres
