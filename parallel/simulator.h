// Runs a Schedule's action lists against per-action costs: checks that the
// lists are a correct pipeline step, predicts the timeline, and reports bubble
// and peak live activations per rank (DESIGN §3).
//
// Timing model: one optimizer step as the executor (parallel/executor.h) runs
// it, in time order. Each rank executes its list in order. F, B, BI, BW and
// the local COPY_F / COPY_B take their cost.
//  - Slots and receives posted ahead: the executor's own rules, the same code
//    (parallel/slot_policy.h). A slot is free as soon as its microbatch
//    leaves it: sends go from staging buffers of their own, at most
//    `sends_in_flight` per chunk and direction; one more waits until the
//    oldest has arrived.
//  - Transfers. A send is non-blocking. Its message moves once it is sent
//    and its receive is posted (a rendezvous, as MPI moves large messages),
//    and takes its hop's transfer time (`hop`, e.g. from the α-β model of
//    parallel/link_model.h) alone on the directed link from sender to
//    receiver; messages moving on one link at once share its rate equally.
//    A RECV blocks until its message has arrived, plus `latency`.
//  - REDUCE_GRADS starts a chunk's data-parallel reduction in the background:
//    it takes `reduce`, the rank's reductions run one after another, and the
//    rank computes on meanwhile. OPTIMIZER_STEP waits for the rank's
//    reductions and takes no time itself: the pipeline's makespan is the
//    latest time any rank passes it.
#pragma once
#include <string>
#include <vector>

#include "parallel/schedule.h"

namespace attnres {

// Per-action costs in arbitrary time units (all >= 0).
struct SimCosts {
  double F = 1, B = 2, BI = 1, BW = 1;
  double latency = 0;  // per message, from its arrival to RECV completion
  double copy = 0;     // one COPY_F / COPY_B (a hand-off in local memory)
  double reduce = 0;   // one chunk's REDUCE_GRADS (its dp gradient all-reduce)
  // Transfer time of one message on hop c−1 -> c, at index c (entry 0 unused);
  // empty = every transfer takes no time. hop_bwd: the same hop's backward
  // message, when its payload differs (cached gradients summed on the hops);
  // empty = as `hop`.
  std::vector<double> hop = {}, hop_bwd = {};
  // Messages a chunk may have in flight per direction (the executor's
  // parallel.sends_in_flight): one more send waits for the oldest to arrive.
  int sends_in_flight = 2;
};

struct TimedAction {
  int index;  // position in the rank's list
  Action action;
  double start, end;  // a RECV starts when reached and ends when unblocked;
                      // a REDUCE_GRADS ends when its reduction does
};

struct RankStats {
  double busy = 0;    // total compute and copy time
  double idle = 0;    // makespan − busy
  double bubble = 0;  // idle / (idle + busy); 0 if the makespan is 0
  double finish = 0;  // time this rank passes OPTIMIZER_STEP (reductions done)
  int peak_live = 0;  // max (mb, chunk) with F done and B (or BW) not yet done
  std::vector<TimedAction> timeline;
};

struct SimResult {
  std::vector<std::string> errors;  // empty when the schedule is valid
  double makespan = 0;
  std::vector<RankStats> ranks;     // empty if the schedule is malformed
  bool ok() const { return errors.empty(); }
};

// Checks (each failure is one message in `errors`):
//  - shape: P, M, V >= 1, one list per rank, a placement of C = P·V chunks
//    that gives every rank V of them, every field in range, every action's
//    chunk placed on the rank that runs it;
//  - each (mb, chunk) has exactly one F and exactly one B, or one BI and one BW;
//  - on each chunk F precedes B/BI, BI precedes BW, B/BI and BW go in mb order;
//  - a hop between chunks on different ranks: F of chunk c > 0 is preceded by
//    its RECV_F, B/BI of chunk c < C−1 by its RECV_B; SEND_F follows its F,
//    SEND_B its B/BI; every peer is the placement of the partner chunk; every
//    SEND matches exactly one RECV and vice versa;
//  - a hop between chunks on the same rank: no messages, one COPY_F(mb, c)
//    between F(mb, c) and F(mb, c+1), one COPY_B(mb, c) between
//    B/BI(mb, c) and B/BI(mb, c−1);
//  - each chunk has one REDUCE_GRADS, after all its backwards (B, BI, BW);
//  - every list ends with its only OPTIMIZER_STEP;
//  - no deadlock: if no rank can progress, the blocked actions are named.
// Throws std::invalid_argument if a cost is negative or not finite, `hop`
// is neither empty nor one entry per chunk, or the schedule is beyond the
// limits below.
SimResult simulate(const Schedule& s, const SimCosts& costs = {});

// Each step of the simulation looks at every rank, so its time grows with
// P x (P x V x M), and each rank keeps a table of every chunk: P^2. Larger
// schedules are refused rather than run for minutes and gigabytes.
constexpr int kMaxSimulatedRanks = 1024;
constexpr int64_t kMaxSimulatedWork = 50'000'000;  // P x P x V x M
// "" if simulate takes a schedule of P ranks, V chunks each and M
// microbatches, else which limit it exceeds (check before making a large one).
std::string simulation_limit_error(int P, int V, int M);

// The 1F1B bubble fraction (P−1)/(M+P−1) for uniform stages.
inline double one_f_one_b_bubble(int P, int M) { return double(P - 1) / double(M + P - 1); }

}  // namespace attnres
