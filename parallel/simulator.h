// Runs a Schedule's action lists against per-action costs: checks that the
// lists are a correct pipeline step, predicts the timeline, and reports bubble
// and peak live activations per rank (DESIGN §3).
//
// Timing model. Each rank executes its list in order. F, B, BI and BW take
// their cost; sends are non-blocking and complete at issue; a RECV blocks
// until the matching SEND has been issued plus `latency`. REDUCE_GRADS and
// OPTIMIZER_STEP take no time: the pipeline's makespan is the latest time any
// rank reaches its REDUCE_GRADS.
#pragma once
#include <string>
#include <vector>

#include "parallel/schedule.h"

namespace attnres {

// Per-action costs in arbitrary time units (all >= 0).
struct SimCosts {
  double F = 1, B = 2, BI = 1, BW = 1;
  double latency = 0;  // per message, from SEND issue to RECV completion
};

struct TimedAction {
  int index;  // position in the rank's list
  Action action;
  double start, end;  // a RECV starts when reached and ends when unblocked
};

struct RankStats {
  double busy = 0;    // total compute time
  double idle = 0;    // makespan − busy
  double bubble = 0;  // idle / (idle + busy); 0 if the makespan is 0
  double finish = 0;  // time this rank reaches REDUCE_GRADS
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
//  - shape: P, M, V >= 1, one list per rank, every field in range, every
//    chunk on the rank that runs it, every peer the right neighbour;
//  - each (mb, chunk) has exactly one F and exactly one B, or one BI and one BW;
//  - on each chunk F precedes B/BI, BI precedes BW, B/BI and BW go in mb order;
//  - P > 1: F of chunk c > 0 is preceded by its RECV_F, B/BI of chunk c < C−1
//    by its RECV_B; SEND_F follows its F, SEND_B its B/BI; every SEND matches
//    exactly one RECV and vice versa. P = 1: no messages, and F(mb, c−1)
//    precedes F(mb, c), B/BI(mb, c+1) precedes B/BI(mb, c);
//  - every list ends with REDUCE_GRADS, OPTIMIZER_STEP (and has no others);
//  - no deadlock: if no rank can progress, the blocked actions are named.
// Throws std::invalid_argument if a cost is negative or not finite.
SimResult simulate(const Schedule& s, const SimCosts& costs = {});

// The 1F1B bubble fraction (P−1)/(M+P−1) for uniform stages.
inline double one_f_one_b_bubble(int P, int M) { return double(P - 1) / double(M + P - 1); }

}  // namespace attnres
