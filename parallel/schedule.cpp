// Schedule generators. Each one places the chunks, builds the per-rank order
// of compute actions (F, B, BI, BW) over the chunks placed on each rank, and
// hands that order to add_transfers(), which derives every send, receive and
// local copy from it and the placement (so each send has exactly one matching
// receive by construction) and puts each chunk's REDUCE_GRADS after its last
// backward.
#include "parallel/schedule.h"

#include <algorithm>
#include <cstdint>
#include <stdexcept>

namespace attnres {

namespace {

using Lists = std::vector<std::vector<Action>>;

Action compute(Op op, int mb, int chunk) { return Action{op, mb, chunk, -1}; }

// Megatron's placement, used by every generator here: chunk c on rank c mod P,
// so rank r holds chunks r, r+P, r+2P, … and the pipeline visits the ranks
// V times in a round. The compute orders below are written for it.
std::vector<int> round_robin(int P, int V) {
  std::vector<int> placement(size_t(P) * V);
  for (int c = 0; c < P * V; c++) placement[size_t(c)] = c % P;
  return placement;
}

// GPipe: all forwards, then all backwards. Backwards go in microbatch order
// (not reversed as in the paper) so gradients accumulate in mb order.
Lists gpipe(const Schedule& s) {
  Lists out(s.P);
  for (int r = 0; r < s.P; r++) {
    const int c = s.chunks_of(r)[0];
    for (int mb = 0; mb < s.M; mb++) out[r].push_back(compute(Op::F, mb, c));
    for (int mb = 0; mb < s.M; mb++) out[r].push_back(compute(Op::B, mb, c));
  }
  return out;
}

// 1F1B (PipeDream-flush): rank r runs P−r−1 warm-up forwards, then alternates
// one forward and one backward, then drains the remaining backwards.
// `extra` more warm-up forwards on every rank but the last: eager 1F1B.
Lists one_f_one_b(const Schedule& s, int extra) {
  const int P = s.P, M = s.M;
  Lists out(P);
  for (int r = 0; r < P; r++) {
    const int c = s.chunks_of(r)[0];
    const int warm = std::min(P - r - 1 + (r + 1 < P ? extra : 0), M);
    for (int i = 0; i < warm; i++) out[r].push_back(compute(Op::F, i, c));
    for (int i = 0; i < M - warm; i++) {
      out[r].push_back(compute(Op::F, warm + i, c));
      out[r].push_back(compute(Op::B, i, c));
    }
    for (int i = M - warm; i < M; i++) out[r].push_back(compute(Op::B, i, c));
  }
  return out;
}

// Megatron's interleaved 1F1B. Rank r sees M·V "virtual" microbatches k in
// groups of P·V: within a group the first P go through its local chunk 0,
// the next P through local chunk 1, and so on (backwards walk the local
// chunks in reverse). Warm-up is 2(P−r−1) + (V−1)P forwards, so the first
// backward of the last chunk can start as soon as its gradient exists.
Lists interleaved(const Schedule& s) {
  const int P = s.P, M = s.M, V = s.V;
  Lists out(P);
  const int group = P * V, total = M * V;
  for (int r = 0; r < P; r++) {
    const std::vector<int> mine = s.chunks_of(r);
    auto virt = [&](Op op, int k) {
      const int local = (k % group) / P;
      const int v = op == Op::F ? local : V - 1 - local;
      return compute(op, (k / group) * P + k % P, mine[size_t(v)]);
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
Lists zb_h1(const Schedule& s) {
  const int P = s.P, M = s.M;
  Lists out(P);
  for (int r = 0; r < P; r++) {
    const int c = s.chunks_of(r)[0];
    std::vector<Action>& l = out[r];
    int f = 0, b = 0, w = 0;
    for (int i = 0; i < P - r - 1 && f < M; i++) l.push_back(compute(Op::F, f++, c));
    for (int i = 0; i < r && f < M; i++) {
      l.push_back(compute(Op::F, f++, c));
      l.push_back(compute(Op::BI, b++, c));
    }
    while (f < M) {
      l.push_back(compute(Op::F, f++, c));
      l.push_back(compute(Op::BI, b++, c));
      l.push_back(compute(Op::BW, w++, c));
    }
    while (b < M) {
      l.push_back(compute(Op::BI, b++, c));
      l.push_back(compute(Op::BW, w++, c));
    }
    while (w < M) l.push_back(compute(Op::BW, w++, c));
  }
  return out;
}

// Wraps each compute action in the transfers it needs, by the placement of
// the neighbouring chunk: a neighbour on another rank gets a RECV right before
// the consumer and a SEND right after the producer; a neighbour on the same
// rank gets a COPY right after the producer. After the last backward of each
// chunk (and its SEND_B / COPY_B) comes the chunk's REDUCE_GRADS; the list
// ends with OPTIMIZER_STEP.
void add_transfers(Schedule& s, const Lists& order) {
  const int C = s.num_chunks();
  const std::vector<int>& at = s.placement;
  for (int r = 0; r < s.P; r++) {
    std::vector<size_t> last_bwd(size_t(C), order[r].size());
    for (size_t i = 0; i < order[r].size(); i++)
      if (order[r][i].op != Op::F) last_bwd[size_t(order[r][i].chunk)] = i;
    std::vector<Action>& l = s.ranks[r];
    for (size_t i = 0; i < order[r].size(); i++) {
      const Action& a = order[r][i];
      const int mb = a.mb, c = a.chunk;
      if (a.op == Op::F) {
        if (c > 0 && at[c - 1] != r) l.push_back({Op::RECV_F, mb, c, at[c - 1]});
        l.push_back(a);
        if (c < C - 1) l.push_back(at[c + 1] == r ? Action{Op::COPY_F, mb, c} : Action{Op::SEND_F, mb, c, at[c + 1]});
      } else if (a.op == Op::B || a.op == Op::BI) {
        if (c < C - 1 && at[c + 1] != r) l.push_back({Op::RECV_B, mb, c, at[c + 1]});
        l.push_back(a);
        if (c > 0) l.push_back(at[c - 1] == r ? Action{Op::COPY_B, mb, c} : Action{Op::SEND_B, mb, c, at[c - 1]});
      } else {
        l.push_back(a);  // BW needs nothing from other chunks
      }
      if (i == last_bwd[size_t(c)]) l.push_back({Op::REDUCE_GRADS, -1, c});
    }
    l.push_back({Op::OPTIMIZER_STEP});
  }
}

void check_args(const std::string& name, int P, int M, int V) {
  const auto& names = schedule_names();
  if (std::find(names.begin(), names.end(), name) == names.end())
    throw std::invalid_argument("unknown schedule '" + name +
                                "' (expected gpipe, 1f1b, eager-1f1b, interleaved or zb-h1)");
  if (P < 1) throw std::invalid_argument("pipeline ranks P=" + std::to_string(P) + " must be >= 1");
  if (M < 1) throw std::invalid_argument("microbatches M=" + std::to_string(M) + " must be >= 1");
  if (V < 1) throw std::invalid_argument("virtual stages V=" + std::to_string(V) + " must be >= 1");
  // A schedule holds about 4 actions per microbatch and chunk: bound it
  // before allocating (P = M = 100000 would be 10^10 actions).
  constexpr int64_t kMaxChunkMicrobatches = 10'000'000;
  if (int64_t(P) * V * M > kMaxChunkMicrobatches)
    throw std::invalid_argument("schedule of P=" + std::to_string(P) + " ranks x V=" + std::to_string(V) +
                                " chunks x M=" + std::to_string(M) + " microbatches exceeds " +
                                std::to_string(kMaxChunkMicrobatches) + " chunk-microbatches");
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
  static const std::vector<std::string> names = {"gpipe", "1f1b", "eager-1f1b", "interleaved", "zb-h1"};
  return names;
}

Schedule make_schedule(const std::string& name, int P, int M, int V) {
  check_args(name, P, M, V);
  Schedule s{name, P, M, V, round_robin(P, V), Lists(P)};
  Lists order;
  if (name == "gpipe") order = gpipe(s);
  else if (name == "1f1b") order = one_f_one_b(s, 0);
  else if (name == "eager-1f1b") order = one_f_one_b(s, 1);
  else if (name == "interleaved") order = interleaved(s);
  else order = zb_h1(s);
  add_transfers(s, order);
  return s;
}

std::vector<int> Schedule::chunks_of(int rank) const {
  std::vector<int> out;
  for (int c = 0; c < int(placement.size()); c++)
    if (placement[size_t(c)] == rank) out.push_back(c);
  return out;
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
    case Op::COPY_F: return "COPY_F";
    case Op::COPY_B: return "COPY_B";
    case Op::REDUCE_GRADS: return "REDUCE_GRADS";
    case Op::OPTIMIZER_STEP: return "OPTIMIZER_STEP";
  }
  return "?";
}

std::string to_string(const Action& a) {
  std::string s = op_name(a.op);
  if (a.mb < 0 && a.chunk < 0 && a.peer < 0) return s;
  s += "(";
  if (a.op != Op::REDUCE_GRADS || a.mb >= 0) s += "mb=" + std::to_string(a.mb) + ", ";
  s += "chunk=" + std::to_string(a.chunk);
  if (a.peer >= 0) s += ", peer=" + std::to_string(a.peer);
  return s + ")";
}

std::vector<int> activation_slots(const Schedule& schedule, int rank) {
  const int C = schedule.num_chunks();
  std::vector<int> live(size_t(C), 0), peak(size_t(C), 0), slots(size_t(C), 0);
  std::vector<bool> local(size_t(C), false);
  for (const Action& a : schedule.ranks[size_t(rank)]) {
    if (a.chunk >= 0) local[size_t(a.chunk)] = true;
    if (a.op == Op::F) peak[a.chunk] = std::max(peak[a.chunk], ++live[a.chunk]);
    if (a.op == Op::B || a.op == Op::BW) --live[a.chunk];
  }
  // One more where the input arrives before F (a receive posted ahead, or a
  // local copy); chunk 0 reads its tokens at F.
  for (int c = 0; c < C; ++c)
    if (local[size_t(c)]) slots[size_t(c)] = peak[size_t(c)] + (c > 0 ? 1 : 0);
  return slots;
}

}  // namespace attnres
