// The pipeline executor in one process (executor_harness.h), compared with
// the one-rank executor bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "parallel/executor.h"
#include "parallel/partition.h"
#include "parallel/schedule.h"
#include "tests/parallel/executor_harness.h"
#include "tests/parallel/fake_communicator.h"
#include "tests/parallel/v_shape_schedule.h"

namespace attnres {
namespace {

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
      const Outcome r = run_threads(c.model, s, {b}, steps, {.cache = l.cache});
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
          const Outcome ref = run_threads(c.model, s, {b}, 2, {.cache = cache}),
                        got = run_threads(re, s, {b}, 2, {.cache = cache});
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
  const ModelConfig m = order_model();
  const std::vector<Schedule> layouts = order_layouts(m);
  for (const Schedule& s : layouts) {
    const Outcome r = run_threads(m, s, {make_batches(m, s.M, 13)}, 2);
    EXPECT_TRUE(r.problems.empty()) << layout_name(s) << "\n" << joined(r.problems);
    EXPECT_TRUE(r.p2p_order.empty()) << layout_name(s) << "\n" << joined(r.p2p_order);
  }
  EXPECT_GE(layouts.size(), 20u);
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

// Tracing: every message a rank sends or receives shows once as a "wire"
// span (its post to the first poll that found it done), and tracing changes
// no value.
TEST(Executor, TraceShowsEveryMessageOnTheWire) {
  const ModelConfig m = tiny(ResidualMode::AttnRes, 2);
  const Schedule s = make_schedule("interleaved", 2, 4, 2);
  const Batches b = make_batches(m, s.M, 23);
  const int steps = 2;
  RunOptions opt;
  opt.trace = true;
  const Outcome r = run_threads(m, s, {b}, steps, opt);
  ASSERT_TRUE(r.problems.empty()) << joined(r.problems);
  expect_equal(one_rank(m, b, steps), r.replicas[0], "traced");
  for (int p = 0; p < s.P; ++p) {
    std::map<std::string, int> want, got;
    for (const Action& a : s.ranks[size_t(p)]) {
      const bool send = a.op == Op::SEND_F || a.op == Op::SEND_B, recv = a.op == Op::RECV_F || a.op == Op::RECV_B;
      if (!send && !recv) continue;
      const int hop = a.op == Op::SEND_F || a.op == Op::RECV_B ? a.chunk + 1 : a.chunk;
      want[op_name(a.op) + std::string("(mb=") + std::to_string(a.mb) + ",hop=" + std::to_string(hop) + ")"] += steps;
    }
    for (const TraceEvent& t : r.traces[size_t(p)]) {
      if (std::string(t.category) != "wire") continue;
      EXPECT_GE(t.dur_us, 0.0) << t.name;
      got[t.name]++;
    }
    EXPECT_EQ(got, want) << "rank " << p;
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
  const Outcome r = run_threads(m, make_schedule("interleaved", 2, M, 2), {b}, 1, {.cache = {true, true}});
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
