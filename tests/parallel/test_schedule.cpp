// Schedule generators checked through the simulator, and the simulator
// checked against hand-computed timelines and deliberately broken schedules.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <random>
#include <stdexcept>

#include "parallel/schedule.h"
#include "parallel/schedule_print.h"
#include "parallel/simulator.h"
#include "tests/parallel/v_shape_schedule.h"

namespace attnres {
namespace {

std::string all_errors(const SimResult& r) {
  std::string s;
  for (const auto& e : r.errors) s += e + "\n";
  return s;
}

bool has_error(const SimResult& r, const std::string& text) {
  return std::any_of(r.errors.begin(), r.errors.end(),
                     [&](const std::string& e) { return e.find(text) != std::string::npos; });
}

// The combinations the generators accept, stated independently of them.
bool runnable(const std::string& name, int P, int M, int V) {
  return name == "interleaved" ? (V >= 2 && M % P == 0) : V == 1;
}

// A huge P x M is refused before anything is allocated (was 6.5 GB in 12 s).
TEST(Schedule, RefusesSizesBeyondTheBound) {
  EXPECT_THROW(make_schedule("1f1b", 100000, 100000, 1), std::invalid_argument);
  EXPECT_NO_THROW(make_schedule("1f1b", 64, 512, 1));
}

TEST(Schedule, EveryRunnableCombinationSimulatesCleanlyAndTheRestThrow) {
  for (const std::string& name : schedule_names())
    for (int P = 1; P <= 8; P++)
      for (int M = 1; M <= 32; M++)
        for (int V = 1; V <= 4; V++) {
          SCOPED_TRACE(name + " P=" + std::to_string(P) + " M=" + std::to_string(M) +
                       " V=" + std::to_string(V));
          if (!runnable(name, P, M, V)) {
            EXPECT_THROW(make_schedule(name, P, M, V), std::invalid_argument);
            continue;
          }
          const Schedule s = make_schedule(name, P, M, V);
          ASSERT_EQ(int(s.ranks.size()), P);
          const SimResult r = simulate(s);
          ASSERT_TRUE(r.ok()) << all_errors(r);
          // Megatron's placement: chunk c on rank c mod P.
          ASSERT_EQ(int(s.placement.size()), P * V);
          for (int c = 0; c < P * V; c++) EXPECT_EQ(s.placement[size_t(c)], c % P);
          int msgs = 0, copies = 0, reduces = 0;
          for (const auto& l : s.ranks)
            for (const Action& a : l) {
              msgs += a.op == Op::SEND_F || a.op == Op::SEND_B;
              copies += is_copy(a.op);
              reduces += a.op == Op::REDUCE_GRADS;
            }
          // One forward and one backward hand-off per microbatch and chunk
          // boundary: messages between ranks, copies when P = 1.
          EXPECT_EQ(msgs, P == 1 ? 0 : 2 * M * (P * V - 1));
          EXPECT_EQ(copies, P == 1 ? 2 * M * (V - 1) : 0);
          EXPECT_EQ(reduces, P * V);
        }
}

TEST(Schedule, OneFOneBAndGPipeBubbleAndPeakMatchTheory) {
  for (int P = 1; P <= 8; P++)
    for (int M = 1; M <= 32; M++)
      for (const std::string name : {"1f1b", "gpipe"}) {
        SCOPED_TRACE(name + " P=" + std::to_string(P) + " M=" + std::to_string(M));
        const SimResult r = simulate(make_schedule(name, P, M), SimCosts{1, 2, 1, 1, 0});
        ASSERT_TRUE(r.ok()) << all_errors(r);
        EXPECT_NEAR(r.makespan, 3.0 * (M + P - 1), 1e-12);
        for (int rank = 0; rank < P; rank++) {
          EXPECT_NEAR(r.ranks[rank].bubble, double(P - 1) / (M + P - 1), 1e-12);
          EXPECT_NEAR(r.ranks[rank].busy, 3.0 * M, 1e-12);
          EXPECT_EQ(r.ranks[rank].peak_live, name == "gpipe" ? M : std::min(P - rank, M));
        }
      }
}

// Eager 1F1B holds one more microbatch on every rank but the last, and
// with hop transfers a third of an F it hides them where 1F1B cannot: at
// P = 2 every microbatch's round trip (F on rank 0, its message, F and B on
// rank 1, the gradient back, B on rank 0) then spans three microbatches'
// compute instead of two. Without transfers it keeps 1F1B's bubble.
TEST(Schedule, EagerOneFOneBHidesTheRoundTrip) {
  for (int P = 2; P <= 4; P++) {
    const int M = 4 * P;
    SCOPED_TRACE("P=" + std::to_string(P));
    const Schedule eager = make_schedule("eager-1f1b", P, M), plain = make_schedule("1f1b", P, M);
    for (int r = 0; r < P; r++) {
      const int extra = r + 1 < P ? 1 : 0;
      EXPECT_EQ(activation_slots(eager, r)[size_t(r)], activation_slots(plain, r)[size_t(r)] + extra) << r;
    }
    SimCosts k{1, 2, 1, 1, 0};
    EXPECT_DOUBLE_EQ(simulate(eager, k).makespan, simulate(plain, k).makespan);
    k.hop.assign(size_t(P), 1.0 / 3);
    const SimResult e = simulate(eager, k), p = simulate(plain, k);
    ASSERT_TRUE(e.ok()) << all_errors(e);
    EXPECT_LT(e.makespan, p.makespan);
  }
}

// ZB-H1 keeps the pipeline's peak (the max over ranks) at 1F1B's, rank 0 at
// exactly 1F1B's, and cuts the idle time from (P−1)(F+BI+BW) to (P−1)(F+BI−BW),
// i.e. P−1 for unit costs: bubble (P−1)/(3M+P−1).
// Later ranks hold more than under 1F1B (up to P): that is where the deferred
// BWs wait, as in the paper's schedule.
TEST(Schedule, ZeroBubbleH1BeatsOneFOneBWithinItsMemory) {
  const SimCosts unit{1, 2, 1, 1, 0};
  for (int P = 1; P <= 8; P++)
    for (int M = 1; M <= 32; M++) {
      SCOPED_TRACE("P=" + std::to_string(P) + " M=" + std::to_string(M));
      const SimResult zb = simulate(make_schedule("zb-h1", P, M), unit);
      const SimResult ob = simulate(make_schedule("1f1b", P, M), unit);
      ASSERT_TRUE(zb.ok()) << all_errors(zb);
      int ob_peak = 0;
      for (const RankStats& st : ob.ranks) ob_peak = std::max(ob_peak, st.peak_live);
      EXPECT_EQ(zb.ranks[0].peak_live, ob.ranks[0].peak_live);
      for (int rank = 0; rank < P; rank++) {
        EXPECT_LE(zb.ranks[rank].peak_live, ob_peak);
        if (M >= P && P >= 2) {
          EXPECT_LT(zb.ranks[rank].bubble, ob.ranks[rank].bubble);
          EXPECT_NEAR(zb.ranks[rank].bubble, double(P - 1) / (3 * M + P - 1), 1e-12);
        }
      }
    }
}

// A chunk is 1/V of a stage, so per-chunk costs are the stage costs / V.
// Interleaving divides the bubble time by V: (P−1)/(V·M + P−1).
TEST(Schedule, InterleavedBeatsOneFOneBAtEqualWork) {
  for (int V = 2; V <= 4; V++)
    for (int P = 2; P <= 8; P++)
      for (int M = P; M <= 32; M += P) {
        SCOPED_TRACE("P=" + std::to_string(P) + " M=" + std::to_string(M) + " V=" + std::to_string(V));
        const SimResult il =
            simulate(make_schedule("interleaved", P, M, V), SimCosts{1.0 / V, 2.0 / V, 1, 1, 0});
        const SimResult ob = simulate(make_schedule("1f1b", P, M), SimCosts{1, 2, 1, 1, 0});
        ASSERT_TRUE(il.ok()) << all_errors(il);
        for (int rank = 0; rank < P; rank++) {
          EXPECT_LT(il.ranks[rank].bubble, ob.ranks[rank].bubble);
          EXPECT_NEAR(il.ranks[rank].bubble, double(P - 1) / (V * M + P - 1), 1e-12);
        }
      }
}

TEST(Schedule, OneFOneBListsForTwoRanks) {
  const Schedule s = make_schedule("1f1b", 2, 2);
  const std::vector<Action> r0 = {{Op::F, 0, 0, -1},     {Op::SEND_F, 0, 0, 1}, {Op::F, 1, 0, -1},
                                  {Op::SEND_F, 1, 0, 1}, {Op::RECV_B, 0, 0, 1}, {Op::B, 0, 0, -1},
                                  {Op::RECV_B, 1, 0, 1}, {Op::B, 1, 0, -1},     {Op::REDUCE_GRADS, -1, 0},
                                  {Op::OPTIMIZER_STEP}};
  const std::vector<Action> r1 = {{Op::RECV_F, 0, 1, 0}, {Op::F, 0, 1, -1},     {Op::B, 0, 1, -1},
                                  {Op::SEND_B, 0, 1, 0}, {Op::RECV_F, 1, 1, 0}, {Op::F, 1, 1, -1},
                                  {Op::B, 1, 1, -1},     {Op::SEND_B, 1, 1, 0}, {Op::REDUCE_GRADS, -1, 1},
                                  {Op::OPTIMIZER_STEP}};
  EXPECT_EQ(s.ranks[0], r0);
  EXPECT_EQ(s.ranks[1], r1);
}

TEST(Schedule, SingleRankInterleavedHandsOverWithCopies) {
  const Schedule s = make_schedule("interleaved", 1, 1, 2);
  const std::vector<Action> r0 = {{Op::F, 0, 0, -1},     {Op::COPY_F, 0, 0, -1}, {Op::F, 0, 1, -1},
                                  {Op::B, 0, 1, -1},     {Op::COPY_B, 0, 1, -1}, {Op::REDUCE_GRADS, -1, 1},
                                  {Op::B, 0, 0, -1},     {Op::REDUCE_GRADS, -1, 0}, {Op::OPTIMIZER_STEP}};
  EXPECT_EQ(s.ranks[0], r0);
  EXPECT_EQ(to_string(r0[1]), "COPY_F(mb=0, chunk=0)");
  EXPECT_EQ(to_string(r0[5]), "REDUCE_GRADS(chunk=1)");
  EXPECT_EQ(to_string(r0[8]), "OPTIMIZER_STEP");
}

// Each chunk's REDUCE_GRADS follows its last backward (and the hand-off that
// backward produces), so under interleaving the later chunk's reduction starts
// while the rank still drains its earlier chunk.
TEST(Schedule, ReduceGradsFollowsEachChunksLastBackward) {
  for (const std::string name : {"gpipe", "1f1b", "zb-h1", "interleaved"})
    for (int P : {1, 2, 4}) {
      const int V = name == "interleaved" ? 2 : 1, M = 2 * P;
      SCOPED_TRACE(name + " P=" + std::to_string(P));
      const Schedule s = make_schedule(name, P, M, V);
      for (int r = 0; r < P; r++) {
        const auto& l = s.ranks[size_t(r)];
        for (size_t i = 0; i < l.size(); i++) {
          if (l[i].op != Op::REDUCE_GRADS) continue;
          // The action before it is the chunk's last backward or its hand-off ...
          size_t j = i - 1;
          if (is_message(l[j].op) || is_copy(l[j].op)) j--;
          EXPECT_TRUE(l[j].op == Op::B || l[j].op == Op::BW || l[j].op == Op::BI) << to_string(l[j]);
          EXPECT_EQ(l[j].chunk, l[i].chunk);
          EXPECT_EQ(l[j].mb, M - 1);
          // ... and the chunk has no backward after it.
          for (size_t k = i + 1; k < l.size(); k++)
            EXPECT_FALSE(l[k].chunk == l[i].chunk && (l[k].op == Op::B || l[k].op == Op::BI || l[k].op == Op::BW));
        }
      }
      if (V == 2) {  // rank 0 reduces chunk P, then computes chunk 0's drain
        const auto& l = s.ranks[0];
        const auto first = std::find(l.begin(), l.end(), Action{Op::REDUCE_GRADS, -1, P});
        ASSERT_NE(first, l.end());
        EXPECT_NE(std::find(first, l.end(), Action{Op::B, M - 1, 0, -1}), l.end());
      }
    }
}

// With a reduce cost, reductions overlap the drain: under interleaving only
// the last chunk's reduction is exposed.
TEST(Simulator, ReductionsRunBesideTheCompute) {
  const SimCosts k{1, 2, 1, 1, 0, 0, 5};
  const SimResult one = simulate(make_schedule("interleaved", 1, 2, 2), k);
  ASSERT_TRUE(one.ok()) << all_errors(one);
  // F, B of 2 mb x 2 chunks = 12 busy. Chunk 1's last B ends at 10: its
  // reduction runs [10, 15) beside chunk 0's last B [10, 12); chunk 0's
  // reduction waits for the link and runs [15, 20). In series: 12 + 2·5 = 22.
  EXPECT_EQ(one.ranks[0].busy, 12.0);
  EXPECT_EQ(one.makespan, 20.0);
  EXPECT_EQ(one.ranks[0].finish, 20.0);
  const SimResult none = simulate(make_schedule("interleaved", 1, 2, 2), SimCosts{1, 2, 1, 1, 0});
  EXPECT_EQ(none.makespan, 12.0);
}

TEST(Simulator, CopiesTakeTheirCostAndAreDrawn) {
  const Schedule s = make_schedule("interleaved", 1, 1, 2);
  const SimResult r = simulate(s, SimCosts{1, 1, 1, 1, 0, 1, 0});
  ASSERT_TRUE(r.ok()) << all_errors(r);
  EXPECT_EQ(r.makespan, 6.0);
  EXPECT_EQ(r.ranks[0].busy, 6.0);
  EXPECT_EQ(format_timeline(s, r), "rank 0 |F0a c0a F0b B0b c0b B0a\n");
}

TEST(Schedule, ZeroBubbleH1DefersOneWeightGradientPerRankIndex) {
  // P=2, M=3, rank 1: no warm-up, one F+BI with deferred BW, steady F+BI+BW,
  // then the cool-down BI+BW and the deferred BW.
  const Schedule s = make_schedule("zb-h1", 2, 3);
  std::vector<Action> compute;
  for (const Action& a : s.ranks[1])
    if (is_compute(a.op)) compute.push_back(a);
  const std::vector<Action> want = {{Op::F, 0, 1, -1},  {Op::BI, 0, 1, -1}, {Op::F, 1, 1, -1},
                                    {Op::BI, 1, 1, -1}, {Op::BW, 0, 1, -1}, {Op::F, 2, 1, -1},
                                    {Op::BI, 2, 1, -1}, {Op::BW, 1, 1, -1}, {Op::BW, 2, 1, -1}};
  EXPECT_EQ(compute, want);
}

TEST(Schedule, BadArgumentsThrowNamingTheValue) {
  auto message = [](auto f) {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  EXPECT_NE(message([] { make_schedule("zb-h2", 2, 4); }).find("'zb-h2'"), std::string::npos);
  EXPECT_NE(message([] { make_schedule("1f1b", 0, 4); }).find("P=0"), std::string::npos);
  EXPECT_NE(message([] { make_schedule("1f1b", 2, 0); }).find("M=0"), std::string::npos);
  EXPECT_NE(message([] { make_schedule("gpipe", 2, 4, 0); }).find("V=0"), std::string::npos);
  EXPECT_NE(message([] { make_schedule("1f1b", 2, 4, 2); }).find("V=2"), std::string::npos);
  EXPECT_NE(message([] { make_schedule("interleaved", 2, 4, 1); }).find("V=1"), std::string::npos);
  const std::string m = message([] { make_schedule("interleaved", 4, 6, 2); });
  EXPECT_NE(m.find("M=6"), std::string::npos) << m;
  EXPECT_NE(m.find("P=4"), std::string::npos) << m;
  EXPECT_THROW(simulate(make_schedule("1f1b", 2, 2), SimCosts{-1, 2, 1, 1, 0}), std::invalid_argument);
}

// Hand-computed: P=2, M=2, F=1, B=2. Rank 1: F0 [1,2) B0 [2,4) F1 [4,5) B1 [5,7);
// rank 0: F0 [0,1) F1 [1,2) B0 [4,6) B1 [7,9).
TEST(Simulator, TimelineOfTwoRankOneFOneB) {
  const Schedule s = make_schedule("1f1b", 2, 2);
  const SimResult r = simulate(s);
  ASSERT_TRUE(r.ok()) << all_errors(r);
  EXPECT_EQ(r.makespan, 9.0);
  EXPECT_EQ(format_timeline(s, r),
            "rank 0 |F0 F1 .  .  B0 B0 .  B1 B1\n"
            "rank 1 |.  F0 B0 B0 F1 B1 B1 .  .\n");
  EXPECT_EQ(r.ranks[0].idle, 3.0);
  EXPECT_EQ(r.ranks[1].finish, 7.0);
}

TEST(Simulator, LatencyDelaysEveryReceive) {
  // P=2, M=1: rank 1 F0 starts at 1.5, B0 ends at 4.5; rank 0 B0 runs [5, 7).
  const SimResult r = simulate(make_schedule("1f1b", 2, 1), SimCosts{1, 2, 1, 1, 0.5});
  ASSERT_TRUE(r.ok()) << all_errors(r);
  EXPECT_EQ(r.makespan, 7.0);
  EXPECT_EQ(r.ranks[1].finish, 4.5);
  EXPECT_EQ(r.ranks[0].busy, 3.0);
  EXPECT_EQ(r.ranks[0].idle, 4.0);
}

// Hand-computed: gpipe, P=2, M=3, F=1, B=2, every message 1.5 alone on its
// link. Rank 1 posts its three receives at 0, rank 0 its gradient receives as
// its forwards take slots. F0, F1, F2 end at 1, 2, 3, and messages moving
// together share the link 0->1: F0 moves alone over [1,2) and at half rate
// over [2,3), arriving at 3; F1 then has 1 left, shared with F2 until 5; F2's
// last 0.5 arrives at 5.5 (two sends in flight at most: F2 leaves at 3,
// when F0 has arrived). Rank 1 runs F0 [3,4) F1 [5,6) F2 [6,7) and B0 B1 B2
// back to back [7,13): its slots are free without waiting for the gradients
// it sent, which arrive at 10.5, 12.5 and 14.5 (each alone on link 1->0).
// Rank 0 runs B0 [10.5,12.5) B1 [12.5,14.5) B2 [14.5,16.5).
TEST(Simulator, HopTransfersShareTheirLink) {
  const Schedule s = make_schedule("gpipe", 2, 3);
  SimCosts k{1, 2, 1, 1, 0};
  k.hop = {0, 1.5};
  const SimResult r = simulate(s, k);
  ASSERT_TRUE(r.ok()) << all_errors(r);
  EXPECT_EQ(r.makespan, 16.5);
  EXPECT_EQ(r.ranks[1].finish, 13.0);
  EXPECT_EQ(r.ranks[0].busy, 9.0);
  EXPECT_EQ(r.ranks[0].idle, 7.5);
  EXPECT_EQ(simulate(s, SimCosts{1, 2, 1, 1, 0}).makespan, 12.0);  // no transfer time
  k.hop = {0, 1.5, 1};
  EXPECT_THROW(simulate(s, k), std::invalid_argument);  // one entry per chunk
  k.hop = {0, -1};
  EXPECT_THROW(simulate(s, k), std::invalid_argument);
  // Backward messages of 0.5 instead: they arrive at 9.5, 11.5 and 13.5, and
  // rank 0 runs B0 [9.5,11.5) B1 [11.5,13.5) B2 [13.5,15.5).
  k.hop = {0, 1.5};
  k.hop_bwd = {0, 0.5};
  EXPECT_EQ(simulate(s, k).makespan, 15.5);
  k.hop_bwd = {0.5};
  EXPECT_THROW(simulate(s, k), std::invalid_argument);
}

// parallel.sends_in_flight = 1: a send waits for the one before it to arrive.
// Same schedule, messages 1.5: F0 leaves at 1 (arrives 2.5); SEND_F1, reached
// at 2, waits until 2.5 (arrives 4); F2 [2.5,3.5) and SEND_F2 waits until 4
// (arrives 5.5). Rank 1: F0 [2.5,3.5) F1 [4,5) F2 [5.5,6.5), B0 B1 B2
// [6.5,12.5) with gradients arriving at 10, 12 and 14 (each sent after the
// one before arrived); rank 0: B0 [10,12) B1 [12,14) B2 [14,16).
TEST(Simulator, SendsBeyondTheWindowWaitForTheOldest) {
  const Schedule s = make_schedule("gpipe", 2, 3);
  SimCosts k{1, 2, 1, 1, 0};
  k.hop = {0, 1.5};
  k.sends_in_flight = 1;
  const SimResult r = simulate(s, k);
  ASSERT_TRUE(r.ok()) << all_errors(r);
  EXPECT_EQ(r.makespan, 16.0);
  EXPECT_EQ(r.ranks[1].finish, 12.5);
  for (const TimedAction& t : r.ranks[0].timeline)
    if (t.action.op == Op::SEND_F && t.action.mb == 1) {
      EXPECT_EQ(t.start, 2.0);
      EXPECT_EQ(t.end, 2.5);
    }
  k.sends_in_flight = 0;
  EXPECT_THROW(simulate(s, k), std::invalid_argument);
}

// A receive is posted only into a free slot, and a transfer starts only once
// both sides are there (rendezvous). 1F1B, P=2, M=3, F=1, B=2, forward
// messages 1.5, gradients 0: rank 1 has 2 slots, so it posts RECV_F of mb 2
// only when mb 0's slot is freed, at the end of B0. Every generator's
// schedule still runs to the end with transfer times.
TEST(Simulator, ReceivesWaitForAFreeSlot) {
  const Schedule s = make_schedule("1f1b", 2, 3);
  SimCosts k{1, 2, 1, 1, 0};
  k.hop = {0, 1.5};
  k.hop_bwd = {0, 0};
  const SimResult r = simulate(s, k);
  ASSERT_TRUE(r.ok()) << all_errors(r);
  // Rank 0: F0 [0,1) F1 [1,2); F0 moves alone over [1,2), shares [2,3), and
  // arrives at 3; F1 arrives at 3.5. Rank 1: F0 [3,4) B0 [4,6); F1 [6,7)
  // B1 [7,9). Rank 0: B0 [6,8) F2 [8,9); mb 0's slot on rank 1 was freed at
  // 6, so F2 moves at once, over [9,10.5). Rank 1: F2 [10.5,11.5)
  // B2 [11.5,13.5); rank 0: B1 [9,11), B2 [13.5,15.5).
  EXPECT_EQ(r.ranks[1].finish, 13.5);
  EXPECT_EQ(r.makespan, 15.5);
  for (const std::string& name : schedule_names())
    for (int P : {2, 3, 4})
      for (int M : {2 * P, 3 * P}) {
        const Schedule g = make_schedule(name, P, M, name == "interleaved" ? 2 : 1);
        SimCosts h{1, 2, 1, 1, 0.1};
        h.hop.assign(size_t(g.num_chunks()), 0.7);
        h.hop_bwd.assign(size_t(g.num_chunks()), 1.3);
        const SimResult t = simulate(g, h);
        EXPECT_TRUE(t.ok()) << name << " P=" << P << " M=" << M << ": " << all_errors(t);
      }
}

// Broken lists (an action dropped, doubled or moved) with transfer times:
// the simulator reports what is wrong, and never crashes or loops (CI runs
// this under ASan). Every action is needed exactly once, so a dropped or a
// doubled one is always found; two swapped ones may still make a valid list.
TEST(Simulator, BrokenListsWithTransfersAreReported) {
  std::mt19937 rng(7);
  for (const std::string& name : schedule_names())
    for (int trial = 0; trial < 40; trial++) {
      Schedule s = make_schedule(name, 3, 6, name == "interleaved" ? 2 : 1);
      SimCosts k{1, 2, 1, 1, 0.1};
      k.hop.assign(size_t(s.num_chunks()), 0.5);
      auto& l = s.ranks[rng() % 3];
      const size_t i = rng() % (l.size() - 1), j = rng() % (l.size() - 1);  // never the OPTIMIZER_STEP
      const int how = trial % 3;
      if (how == 0) l.erase(l.begin() + long(i));
      if (how == 1) l.insert(l.begin() + long(j), l[i]);
      if (how == 2) std::swap(l[i], l[j]);
      const SimResult r = simulate(s, k);
      if (how != 2) {
        EXPECT_FALSE(r.ok()) << name << " trial " << trial << ": a broken list passed";
      }
    }
}

TEST(Simulator, ChromeTraceHasOneEventPerComputeAndScaledTimes) {
  const Schedule s = make_schedule("1f1b", 2, 2);
  const SimResult r = simulate(s);
  const std::string path = std::string(ATTNRES_BINARY_DIR) + "/test_schedule_trace.json";
  write_chrome_trace(path, s, r, 10.0);
  std::ifstream f(path);
  const nlohmann::json j = nlohmann::json::parse(f);
  std::remove(path.c_str());
  int compute = 0, waits = 0;
  for (const auto& e : j.at("traceEvents")) {
    if (e.at("ph") != "X") continue;
    if (e.at("cat") == "compute") compute++;
    else waits++;
    if (e.at("name") == "B mb0 c0") {  // rank 0's B0 runs [4, 6)
      EXPECT_EQ(e.at("pid"), 0);
      EXPECT_EQ(e.at("ts").get<double>(), 40.0);
      EXPECT_EQ(e.at("dur").get<double>(), 20.0);
    }
  }
  EXPECT_EQ(compute, 8);  // F and B of 2 microbatches on 2 ranks
  EXPECT_EQ(waits, 3);    // rank 1 waits for F0, rank 0 for B0 and B1
  EXPECT_THROW(write_chrome_trace("/nonexistent-dir/x.json", s, r), std::runtime_error);
}

size_t find_action(const std::vector<Action>& l, const Action& a) {
  const auto it = std::find(l.begin(), l.end(), a);
  EXPECT_NE(it, l.end()) << to_string(a);
  return size_t(it - l.begin());
}

TEST(Simulator, CatchesRemovedReceive) {
  Schedule s = make_schedule("1f1b", 2, 2);
  auto& l = s.ranks[1];
  l.erase(l.begin() + long(find_action(l, {Op::RECV_F, 0, 1, 0})));
  const SimResult r = simulate(s);
  EXPECT_TRUE(has_error(r, "F(mb=0, chunk=1) on rank 1 has no RECV_F(mb=0, chunk=1) before it"))
      << all_errors(r);
  EXPECT_TRUE(has_error(r, "SEND_F(mb=0, chunk=0) on rank 0 has no matching RECV_F(mb=0, chunk=1) on rank 1"))
      << all_errors(r);
}

TEST(Simulator, CatchesDeadlockFromSwappedOrder) {
  // Rank 0 waits for mb 0's gradient before sending mb 0's activation.
  Schedule s = make_schedule("1f1b", 2, 2);
  auto& l = s.ranks[0];
  std::swap(l[find_action(l, {Op::SEND_F, 0, 0, 1})], l[find_action(l, {Op::RECV_B, 0, 0, 1})]);
  const SimResult r = simulate(s);
  ASSERT_EQ(r.errors.size(), 1u) << all_errors(r);  // structurally fine, it only hangs
  EXPECT_EQ(r.errors[0],
            "deadlock: no rank can progress; waiting: rank 0 #1 RECV_B(mb=0, chunk=0, peer=1), "
            "rank 1 #0 RECV_F(mb=0, chunk=1, peer=0)");
}

TEST(Simulator, CatchesDuplicateForward) {
  Schedule s = make_schedule("gpipe", 1, 2);
  s.ranks[0].insert(s.ranks[0].begin() + 1, Action{Op::F, 0, 0, -1});
  const SimResult r = simulate(s);
  EXPECT_TRUE(has_error(r, "F(mb=0, chunk=0) on rank 0 appears 2 times (expected 1)")) << all_errors(r);
}

TEST(Simulator, CatchesBackwardsOutOfMicrobatchOrder) {
  Schedule s = make_schedule("gpipe", 1, 2);  // F0 F1 B0 B1
  std::swap(s.ranks[0][2], s.ranks[0][3]);
  const SimResult r = simulate(s);
  ASSERT_EQ(r.errors.size(), 1u) << all_errors(r);
  EXPECT_NE(r.errors[0].find("B(mb=1, chunk=0) on rank 0 runs before the backward of mb 0"),
            std::string::npos);
}

TEST(Simulator, CatchesWeightGradientBeforeInputGradient) {
  Schedule s = make_schedule("zb-h1", 1, 1);  // F0 BI0 BW0
  std::swap(s.ranks[0][1], s.ranks[0][2]);
  const SimResult r = simulate(s);
  EXPECT_TRUE(has_error(r, "BI(mb=0, chunk=0) must come before BW(mb=0, chunk=0) on rank 0"))
      << all_errors(r);
}

TEST(Simulator, CatchesWrongPeerMissingStepAndLocalMessages) {
  Schedule s = make_schedule("1f1b", 2, 1);
  s.ranks[0][find_action(s.ranks[0], {Op::SEND_F, 0, 0, 1})].peer = 0;
  s.ranks[1].pop_back();
  SimResult r = simulate(s);
  EXPECT_TRUE(has_error(r, "rank 0 #1 SEND_F(mb=0, chunk=0, peer=0): peer must be rank 1")) << all_errors(r);
  EXPECT_TRUE(has_error(r, "rank 1: list must end with OPTIMIZER_STEP")) << all_errors(r);

  Schedule one = make_schedule("interleaved", 1, 1, 2);
  one.ranks[0].insert(one.ranks[0].begin() + 1, Action{Op::SEND_F, 0, 0, 0});
  r = simulate(one);
  EXPECT_TRUE(has_error(r, "rank 0 #1 SEND_F(mb=0, chunk=0, peer=0): chunks 0 and 1 are both on this rank; "
                           "they hand over with a COPY, not a message"))
      << all_errors(r);

  Schedule bad = make_schedule("1f1b", 2, 1);
  bad.ranks[0][0].chunk = 1;  // chunk 1 lives on rank 1
  r = simulate(bad);
  EXPECT_TRUE(has_error(r, "chunk 1 runs on rank 1")) << all_errors(r);
  EXPECT_TRUE(r.ranks.empty());
}

TEST(Simulator, CatchesMissingMisplacedAndRemoteCopies) {
  Schedule s = make_schedule("interleaved", 1, 1, 2);  // F0 COPY_F F1 B1 COPY_B R1 B0 R0 STEP
  auto& l = s.ranks[0];
  l.erase(l.begin() + long(find_action(l, {Op::COPY_B, 0, 1})));
  std::swap(l[1], l[2]);  // COPY_F after its consumer
  SimResult r = simulate(s);
  EXPECT_TRUE(has_error(r, "B(mb=0, chunk=1) on rank 0 has no COPY_B(mb=0, chunk=1) after it")) << all_errors(r);
  EXPECT_TRUE(has_error(r, "COPY_F(mb=0, chunk=0) must come before F(mb=0, chunk=1) on rank 0 (its input)"))
      << all_errors(r);

  Schedule two = make_schedule("1f1b", 2, 1);
  two.ranks[0].insert(two.ranks[0].begin() + 1, Action{Op::COPY_F, 0, 0});
  r = simulate(two);
  EXPECT_TRUE(has_error(r, "rank 0 #1 COPY_F(mb=0, chunk=0): chunk 1 runs on rank 1; a hop between ranks is "
                           "a SEND and a RECV, not a copy"))
      << all_errors(r);
}

TEST(Simulator, CatchesMissingAndEarlyReduction) {
  Schedule s = make_schedule("interleaved", 1, 2, 2);
  auto& l = s.ranks[0];
  const size_t r1 = find_action(l, {Op::REDUCE_GRADS, -1, 1});
  const Action moved = l[r1];
  l.erase(l.begin() + long(r1));
  l.insert(l.begin(), moved);  // before every backward of chunk 1
  l.erase(l.begin() + long(find_action(l, {Op::REDUCE_GRADS, -1, 0})));
  const SimResult r = simulate(s);
  EXPECT_TRUE(has_error(r, "REDUCE_GRADS(chunk=1) on rank 0 must come after B(mb=1, chunk=1) (its last backward)"))
      << all_errors(r);
  EXPECT_TRUE(has_error(r, "REDUCE_GRADS(chunk=0) on rank 0 appears 0 times (expected 1)")) << all_errors(r);
}

TEST(Simulator, CatchesBadPlacement) {
  Schedule s = make_schedule("interleaved", 2, 2, 2);
  s.placement = {0, 1, 0};
  EXPECT_TRUE(has_error(simulate(s), "places 3 chunks, expected P*V=4"));
  s.placement = {0, 1, 1, 1};
  SimResult r = simulate(s);
  EXPECT_TRUE(has_error(r, "rank 0 holds 1 chunks (expected V=2)")) << all_errors(r);
  EXPECT_TRUE(has_error(r, "rank 1 holds 3 chunks (expected V=2)")) << all_errors(r);
  EXPECT_TRUE(has_error(r, "chunk 2 runs on rank 1")) << all_errors(r);
  s.placement = {0, 1, 2, 1};
  EXPECT_TRUE(has_error(simulate(s), "chunk 2 is placed on rank 2, outside [0, 2)"));
}

// A placement no generator makes: the "V" shape 0, 1, 1, 0, where chunks 1 and
// 2 share rank 1 and hand over by copy. The simulator takes placement, peers
// and copies from the schedule alone. Unit costs F = 1, B = 2: rank 0 F [0,1),
// rank 1 F F [1,3), rank 0 F B [3,6), rank 1 B B [6,10), rank 0 B [10,12).
TEST(Simulator, FollowsAnyPlacement) {
  const Schedule s = v_shape_schedule();
  const SimResult r = simulate(s);
  ASSERT_TRUE(r.ok()) << all_errors(r);
  EXPECT_EQ(r.makespan, 12.0);
  EXPECT_EQ(r.ranks[0].busy, 6.0);
  EXPECT_EQ(r.ranks[1].finish, 10.0);
  EXPECT_EQ(format_timeline(s, r),
            "rank 0 |F0a .   .   F0b B0b B0b .   .   .   .   B0a B0a\n"
            "rank 1 |.   F0a F0b .   .   .   B0b B0b B0a B0a .   .\n");
}

}  // namespace
}  // namespace attnres
