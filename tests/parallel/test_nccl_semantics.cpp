// NCCL's rules on the CPU (fake_nccl_communicator.h, CTest nccl_semantics):
// every schedule runs to the end under them, with the arrangement the NCCL
// communicator uses (parallel/cuda/nccl_arrangement.h), and equals one
// process bit for bit; the arrangement it had before, every message on one
// communicator and stream, deadlocks, and so does one per pair of ranks.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "parallel/cuda/nccl_arrangement.h"
#include "tests/parallel/executor_harness.h"
#include "tests/parallel/fake_communicator.h"
#include "tests/parallel/fake_nccl_communicator.h"
#include "tests/parallel/v_shape_schedule.h"

namespace attnres {
namespace {

// The NCCL communicator before issue #28: every message, in a group of its
// own, on the one stream of the group's one communicator.
int one_queue(int, int, int) { return kGroupQueue; }
// A communicator and stream per pair of ranks, both directions on it (as
// PyTorch's ProcessGroupNCCL does for send and recv).
int pair_queue(int a, int b, int size) { return std::min(a, b) * size + std::max(a, b); }

// Two ranks, each running body(communicator, rank) on its own thread under
// NCCL's rules; returns the model's deadlock report ("" if none).
std::string run_pair(QueueOf queue_of, const std::function<void(Communicator&, int)>& body) {
  FakeNetwork net(2);
  NcclModel model(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      FakeCommunicator inner(net, r);
      FakeNcclCommunicator c(model, "pair", inner, queue_of);
      try {
        body(c, r);
      } catch (const std::exception&) {
        // the deadlock, reported by the model
      }
      model.leave();
    });
  for (std::thread& t : threads) t.join();
  return model.deadlock();
}

// The rules themselves on two ranks. A receive posted before the send the
// peer waits for: fine on an edge's queue, a deadlock on a shared one. A
// send waited for before the peer posts its receive: a deadlock on any
// arrangement (MPI's buffered sends would complete it).
TEST(NcclSemantics, ModelFollowsNcclRules) {
  std::vector<float> got(2, 0.0f);
  auto receive_first = [&](Communicator& c, int r) {
    float mine = float(r + 1);
    Request recv = c.irecv({{&got[size_t(r)], 1}}, 1 - r, {0, 0, Direction::Backward});
    Request send = c.isend({{&mine, 1}}, 1 - r, {0, 0, Direction::Backward});
    c.wait(recv);
    c.wait(send);
  };
  EXPECT_EQ(run_pair(p2p_queue, receive_first), "");
  EXPECT_EQ(got, (std::vector<float>{2.0f, 1.0f}));

  const std::string shared = run_pair(one_queue, receive_first);
  EXPECT_NE(shared.find("deadlock"), std::string::npos) << shared;
  for (const char* head : {"pair rank 0 (queue -1) has at its head the receive of backward message 1->0",
                           "pair rank 1 (queue -1) has at its head the receive of backward message 0->1"})
    EXPECT_NE(shared.find(head), std::string::npos) << shared;

  const std::string send_first = run_pair(p2p_queue, [](Communicator& c, int r) {
    float x = 0;
    Request send = c.isend({{&x, 1}}, 1 - r, {0, 0, Direction::Forward});
    c.wait(send);
    Request recv = c.irecv({{&x, 1}}, 1 - r, {0, 0, Direction::Forward});
    c.wait(recv);
  });
  EXPECT_NE(send_first.find("waits for the send of forward message 0->1"), std::string::npos) << send_first;
}

// ncclCommSplit's rounds: every directed edge once, no rank twice in a
// round, 2(size − 1) rounds (2 size when odd).
TEST(NcclSemantics, EdgeRoundsSplitEveryDirectedEdgeOnce) {
  for (int size = 1; size <= 9; ++size) {
    const auto rounds = edge_rounds(size);
    EXPECT_EQ(int(rounds.size()), size == 1 ? 0 : 2 * (size - 1 + size % 2)) << "size " << size;
    std::set<std::pair<int, int>> edges;
    for (const auto& round : rounds) {
      std::set<int> ranks;
      for (const auto& [src, dst] : round) {
        EXPECT_TRUE(ranks.insert(src).second && ranks.insert(dst).second) << "size " << size;
        EXPECT_TRUE(src != dst && src < size && dst < size && edges.insert({src, dst}).second) << "size " << size;
      }
    }
    EXPECT_EQ(int(edges.size()), size * (size - 1)) << "size " << size;
  }
}

// Runs s under NCCL's rules with the NCCL communicator's arrangement and
// checks it against one process.
void expect_runs_like_one_process(const ModelConfig& m, const Schedule& s, const std::vector<Batches>& b,
                                  const std::vector<Result>& want, const RunOptions& opt, const std::string& what) {
  RunOptions nccl = opt;
  nccl.nccl = p2p_queue;
  const Outcome r = run_threads(m, s, b, opt.zero1 ? 1 : 2, nccl);
  ASSERT_EQ(r.deadlock, "") << what;
  ASSERT_TRUE(r.problems.empty()) << what << "\n" << joined(r.problems);
  for (size_t d = 0; d < want.size(); ++d) expect_equal(want[d], r.replicas[d], what);
}

// Every generator's schedule (P 2–4, V 1–2, three M each), receives posted
// ahead (the executor always does), interleaving with cross-stage caching,
// every recomputation mode, the V-shape placement, and ZeRO-1 over two
// replicas: all run to the end under NCCL's rules and equal one process.
TEST(NcclSemantics, EveryScheduleRunsToTheEndAndEqualsOneProcess) {
  const ModelConfig m = order_model();
  std::map<int, Result> by_M;  // one process, per microbatch count
  for (const Schedule& s : order_layouts(m)) {
    const std::vector<Batches> b = {make_batches(m, s.M, 13)};
    if (!by_M.count(s.M)) by_M[s.M] = one_rank(m, b[0], 2);
    const Result& want = by_M[s.M];
    expect_runs_like_one_process(m, s, b, {want}, {}, layout_name(s));
    if (s.V > 1) expect_runs_like_one_process(m, s, b, {want}, {.cache = {true, false}}, layout_name(s) + " cached");
  }
  for (Recompute r : {Recompute::Selective, Recompute::Block, Recompute::Full}) {
    ModelConfig re = m;
    re.recompute = r;
    for (const Schedule& s : {make_schedule("gpipe", 2, 4), make_schedule("1f1b", 3, 4), make_schedule("zb-h1", 2, 4),
                              make_schedule("interleaved", 2, 4, 2)}) {
      const Batches b = make_batches(m, s.M, 13);
      const std::string what = layout_name(s) + " recompute " + recompute_name(r);
      expect_runs_like_one_process(re, s, {b}, {one_rank(re, b, 2)}, {}, what);
    }
  }
  const ModelConfig v = tiny(ResidualMode::AttnRes, 1);
  const Schedule vs = v_shape_schedule();
  const Batches vb = make_batches(v, vs.M, 13);
  expect_runs_like_one_process(v, vs, {vb}, {one_rank(v, vb, 2)}, {}, "v-shape");
  // ZeRO-1: each replica's summed gradients, reduce-scattered, then gathered.
  for (const Schedule& s : {make_schedule("zb-h1", 2, 4), make_schedule("interleaved", 2, 4, 2)}) {
    const std::vector<Batches> b = {make_batches(m, s.M, 21), make_batches(m, s.M, 22)};
    Result x = one_rank(m, b[0], 1), y = one_rank(m, b[1], 1), sum = x;
    for (auto& [name, g] : sum.grads)
      for (size_t i = 0; i < g.size(); ++i) g[i] += y.grads.at(name)[i];
    x.grads = y.grads = sum.grads;
    expect_runs_like_one_process(m, s, b, {x, y}, {.zero1 = true}, layout_name(s) + " ZeRO-1 dp=2");
  }
}

// A queue shared by both directions of an edge, on the same layouts: the
// model finds a deadlock on every one, and names the calls at the heads of
// the queues. So it does with a queue per pair of ranks: a receive posted
// ahead still blocks the send behind it.
TEST(NcclSemantics, SharedQueuesDeadlock) {
  const ModelConfig m = order_model();
  const std::vector<Schedule> layouts = order_layouts(m);
  EXPECT_EQ(layouts.size(), 42u);  // gpipe, 1f1b, eager-1f1b, zb-h1 (V = 1) and interleaved (V = 2)
  for (QueueOf shared : {one_queue, pair_queue}) {
    int deadlocks = 0;
    for (const Schedule& s : layouts) {
      const Outcome r = run_threads(m, s, {make_batches(m, s.M, 13)}, 2, {.nccl = shared});
      deadlocks += !r.deadlock.empty();
      EXPECT_NE(r.deadlock.find("has at its head the"), std::string::npos) << layout_name(s) << "\n" << r.deadlock;
    }
    EXPECT_EQ(deadlocks, int(layouts.size())) << (shared == one_queue ? "one queue" : "a queue per pair");
  }
}

}  // namespace
}  // namespace attnres
