// Schedule generators. Each one first builds the per-rank order of compute
// actions (F, B, BI, BW); add_messages() then derives every send and receive
// from that order, so each send has exactly one matching receive by
// construction.
#include "parallel/schedule.h"

#include <algorithm>
#include <stdexcept>

namespace attnres {

namespace {

using Lists = std::vector<std::vector<Action>>;

Action compute(Op op, int mb, int chunk) { return Action{op, mb, chunk, -1}; }

// GPipe: all forwards, then all backwards. Backwards go in microbatch order
// (not reversed as in the paper) so gradients accumulate in mb order.
Lists gpipe(int P, int M) {
  Lists out(P);
  for (int r = 0; r < P; r++) {
    for (int mb = 0; mb < M; mb++) out[r].push_back(compute(Op::F, mb, r));
    for (int mb = 0; mb < M; mb++) out[r].push_back(compute(Op::B, mb, r));
  }
  return out;
}

// 1F1B (PipeDream-flush): rank r runs P−r−1 warm-up forwards, then alternates
// one forward and one backward, then drains the remaining backwards.
Lists one_f_one_b(int P, int M) {
  Lists out(P);
  for (int r = 0; r < P; r++) {
    const int warm = std::min(P - r - 1, M);
    for (int i = 0; i < warm; i++) out[r].push_back(compute(Op::F, i, r));
    for (int i = 0; i < M - warm; i++) {
      out[r].push_back(compute(Op::F, warm + i, r));
      out[r].push_back(compute(Op::B, i, r));
    }
    for (int i = M - warm; i < M; i++) out[r].push_back(compute(Op::B, i, r));
  }
  return out;
}

// Megatron's interleaved 1F1B. Rank r sees M·V "virtual" microbatches k in
// groups of P·V: within a group the first P go through its local chunk 0,
// the next P through local chunk 1, and so on (backwards walk the local
// chunks in reverse). Warm-up is 2(P−r−1) + (V−1)P forwards, so the first
// backward of the last chunk can start as soon as its gradient exists.
Lists interleaved(int P, int M, int V) {
  Lists out(P);
  const int group = P * V, total = M * V;
  for (int r = 0; r < P; r++) {
    auto virt = [&](Op op, int k) {
      const int local = (k % group) / P;
      const int v = op == Op::F ? local : V - 1 - local;
      return compute(op, (k / group) * P + k % P, v * P + r);
    };
    const int warm = std::min(2 * (P - r - 1) + (V - 1) * P, total);
    for (int k = 0; k < warm; k++) out[r].push_back(virt(Op::F, k));
    for (int k = 0; k < total - warm; k++) {
      out[r].push_back(virt(Op::F, warm + k));
      out[r].push_back(virt(Op::B, k));
    }
    for (int k = total - warm; k < total; k++) out[r].push_back(virt(Op::B, k));
  }
  return out;
}

// ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism", the uniform B/W split
// as in sail-sg's Megatron-DeepSpeed schedule). Rank r:
//   P−r−1 warm-up forwards;
//   r steps of F + BI whose BW is deferred;
//   steady F + BI + BW (oldest pending BW);
//   cool-down BI + BW;
//   the r deferred BWs, which fill the cool-down bubble.
// Every rank then holds at most P live activations, the peak of rank 0 under
// 1F1B, while the idle time per rank shrinks from (P−1)(F+BI+BW) to
// (P−1)(F+BI−BW) for M ≥ P and BW ≤ F+BI (P−1 for unit costs).
Lists zb_h1(int P, int M) {
  Lists out(P);
  for (int r = 0; r < P; r++) {
    std::vector<Action>& l = out[r];
    int f = 0, b = 0, w = 0;
    for (int i = 0; i < P - r - 1 && f < M; i++) l.push_back(compute(Op::F, f++, r));
    for (int i = 0; i < r && f < M; i++) {
      l.push_back(compute(Op::F, f++, r));
      l.push_back(compute(Op::BI, b++, r));
    }
    while (f < M) {
      l.push_back(compute(Op::F, f++, r));
      l.push_back(compute(Op::BI, b++, r));
      l.push_back(compute(Op::BW, w++, r));
    }
    while (b < M) {
      l.push_back(compute(Op::BI, b++, r));
      l.push_back(compute(Op::BW, w++, r));
    }
    while (w < M) l.push_back(compute(Op::BW, w++, r));
  }
  return out;
}

// Wraps each compute action in the messages it needs: RECV right before the
// consumer, SEND right after the producer. With P = 1 neighbouring chunks
// share the rank and nothing is sent.
Schedule add_messages(const std::string& name, int P, int M, int V, const Lists& order) {
  Schedule s{name, P, M, V, Lists(P)};
  const int C = P * V;
  const bool msgs = P > 1;
  for (int r = 0; r < P; r++) {
    std::vector<Action>& l = s.ranks[r];
    for (const Action& a : order[r]) {
      const int mb = a.mb, c = a.chunk;
      if (a.op == Op::F) {
        if (msgs && c > 0) l.push_back({Op::RECV_F, mb, c, chunk_rank(c - 1, P)});
        l.push_back(a);
        if (msgs && c < C - 1) l.push_back({Op::SEND_F, mb, c, chunk_rank(c + 1, P)});
      } else if (a.op == Op::B || a.op == Op::BI) {
        if (msgs && c < C - 1) l.push_back({Op::RECV_B, mb, c, chunk_rank(c + 1, P)});
        l.push_back(a);
        if (msgs && c > 0) l.push_back({Op::SEND_B, mb, c, chunk_rank(c - 1, P)});
      } else {
        l.push_back(a);  // BW needs nothing from other ranks
      }
    }
    l.push_back({Op::REDUCE_GRADS});
    l.push_back({Op::OPTIMIZER_STEP});
  }
  return s;
}

void check_args(const std::string& name, int P, int M, int V) {
  const auto& names = schedule_names();
  if (std::find(names.begin(), names.end(), name) == names.end())
    throw std::invalid_argument("unknown schedule '" + name +
                                "' (expected gpipe, 1f1b, interleaved or zb-h1)");
  if (P < 1) throw std::invalid_argument("pipeline ranks P=" + std::to_string(P) + " must be >= 1");
  if (M < 1) throw std::invalid_argument("microbatches M=" + std::to_string(M) + " must be >= 1");
  if (V < 1) throw std::invalid_argument("virtual stages V=" + std::to_string(V) + " must be >= 1");
  if (name == "interleaved") {
    if (V < 2)
      throw std::invalid_argument("schedule 'interleaved' needs virtual stages V >= 2, got V=" +
                                  std::to_string(V));
    if (M % P != 0)
      throw std::invalid_argument("schedule 'interleaved' needs microbatches M=" + std::to_string(M) +
                                  " divisible by pipeline ranks P=" + std::to_string(P));
  } else if (V != 1) {
    throw std::invalid_argument("schedule '" + name + "' runs one chunk per rank; virtual stages V=" +
                                std::to_string(V) + " needs schedule 'interleaved'");
  }
}

}  // namespace

const std::vector<std::string>& schedule_names() {
  static const std::vector<std::string> names = {"gpipe", "1f1b", "interleaved", "zb-h1"};
  return names;
}

Schedule make_schedule(const std::string& name, int P, int M, int V) {
  check_args(name, P, M, V);
  Lists order;
  if (name == "gpipe") order = gpipe(P, M);
  else if (name == "1f1b") order = one_f_one_b(P, M);
  else if (name == "interleaved") order = interleaved(P, M, V);
  else order = zb_h1(P, M);
  return add_messages(name, P, M, V, order);
}

const char* op_name(Op op) {
  switch (op) {
    case Op::F: return "F";
    case Op::B: return "B";
    case Op::BI: return "BI";
    case Op::BW: return "BW";
    case Op::SEND_F: return "SEND_F";
    case Op::RECV_F: return "RECV_F";
    case Op::SEND_B: return "SEND_B";
    case Op::RECV_B: return "RECV_B";
    case Op::REDUCE_GRADS: return "REDUCE_GRADS";
    case Op::OPTIMIZER_STEP: return "OPTIMIZER_STEP";
  }
  return "?";
}

std::string to_string(const Action& a) {
  std::string s = op_name(a.op);
  if (a.mb < 0 && a.chunk < 0 && a.peer < 0) return s;
  s += "(mb=" + std::to_string(a.mb) + ", chunk=" + std::to_string(a.chunk);
  if (a.peer >= 0) s += ", peer=" + std::to_string(a.peer);
  return s + ")";
}

}  // namespace attnres
