// The schedule simulator: a shape pass (can the lists be indexed at all), a
// structural pass (counts, orders, message matching) and a timed run.
#include "parallel/simulator.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <map>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include "parallel/slot_policy.h"

namespace attnres {

namespace {

std::string at(int r, int i, const Action& a) {
  return "rank " + std::to_string(r) + " #" + std::to_string(i) + " " + to_string(a);
}

std::string name(Op op, int mb, int c) { return to_string(Action{op, mb, c, -1}); }

// The chunk on the other side of a hand-off: SEND_F(c) pairs with RECV_F(c+1),
// COPY_F(c) feeds F(c+1), and so on.
int partner_chunk(Op op, int c) {
  return (op == Op::SEND_F || op == Op::RECV_B || op == Op::COPY_F) ? c + 1 : c - 1;
}

// Shape errors make the lists impossible to index; the other passes need none.
void check_shape(const Schedule& s, std::vector<std::string>& errors) {
  if (s.P < 1 || s.M < 1 || s.V < 1) {
    errors.push_back("schedule '" + s.name + "' has P=" + std::to_string(s.P) + " M=" +
                     std::to_string(s.M) + " V=" + std::to_string(s.V) + " (all must be >= 1)");
    return;
  }
  if (int(s.ranks.size()) != s.P) {
    errors.push_back("schedule '" + s.name + "' has " + std::to_string(s.ranks.size()) +
                     " action lists for P=" + std::to_string(s.P) + " ranks");
    return;
  }
  const int C = s.num_chunks();
  if (int(s.placement.size()) != C) {
    errors.push_back("schedule '" + s.name + "' places " + std::to_string(s.placement.size()) +
                     " chunks, expected P*V=" + std::to_string(C));
    return;
  }
  std::vector<int> held(size_t(s.P), 0);
  for (int c = 0; c < C; c++) {
    const int r = s.placement[size_t(c)];
    if (r < 0 || r >= s.P) {
      errors.push_back("chunk " + std::to_string(c) + " is placed on rank " + std::to_string(r) +
                       ", outside [0, " + std::to_string(s.P) + ")");
      return;
    }
    held[size_t(r)]++;
  }
  for (int r = 0; r < s.P; r++)
    if (held[size_t(r)] != s.V)
      errors.push_back("rank " + std::to_string(r) + " holds " + std::to_string(held[size_t(r)]) +
                       " chunks (expected V=" + std::to_string(s.V) + ")");
  auto on_rank = [&](int r, int i, const Action& a) {
    if (s.placement[size_t(a.chunk)] != r)
      errors.push_back(at(r, i, a) + ": chunk " + std::to_string(a.chunk) + " runs on rank " +
                       std::to_string(s.placement[size_t(a.chunk)]));
  };
  for (int r = 0; r < s.P; r++) {
    for (int i = 0; i < int(s.ranks[r].size()); i++) {
      const Action& a = s.ranks[r][i];
      if (a.op == Op::OPTIMIZER_STEP) {
        if (a.mb != -1 || a.chunk != -1 || a.peer != -1)
          errors.push_back(at(r, i, a) + ": mb, chunk and peer must be -1");
        continue;
      }
      if (a.op == Op::REDUCE_GRADS) {
        if (a.mb != -1 || a.peer != -1 || a.chunk < 0 || a.chunk >= C)
          errors.push_back(at(r, i, a) + ": needs a chunk in [0, " + std::to_string(C) +
                           "), and mb and peer -1");
        else
          on_rank(r, i, a);
        continue;
      }
      if (a.mb < 0 || a.mb >= s.M || a.chunk < 0 || a.chunk >= C) {
        errors.push_back(at(r, i, a) + ": mb must be in [0, " + std::to_string(s.M) +
                         ") and chunk in [0, " + std::to_string(C) + ")");
        continue;
      }
      on_rank(r, i, a);
      if (is_message(a.op) || is_copy(a.op)) {
        const int pc = partner_chunk(a.op, a.chunk);
        if (pc < 0 || pc >= C)
          errors.push_back(at(r, i, a) + ": chunk " + std::to_string(a.chunk) + " has no chunk " +
                           std::to_string(pc) + " to exchange with");
      }
    }
  }
}

struct Slot {
  int count = 0;
  int pos = -1;  // list position of the first occurrence
};

void check_structure(const Schedule& s, std::vector<std::string>& errors) {
  const int P = s.P, M = s.M, C = s.num_chunks();
  constexpr size_t kOps = size_t(Op::COPY_B) + 1;  // F … COPY_B, by (mb, chunk)
  std::vector<Slot> tab(kOps * M * C);
  auto slot = [&](Op op, int mb, int c) -> Slot& { return tab[(size_t(op) * M + mb) * C + c]; };
  std::vector<Slot> reduce(static_cast<size_t>(C));  // REDUCE_GRADS by chunk
  const std::vector<int>& place = s.placement;

  for (int r = 0; r < P; r++) {
    const auto& l = s.ranks[r];
    int step = 0;
    for (int i = 0; i < int(l.size()); i++) {
      const Action& a = l[i];
      if (a.op == Op::OPTIMIZER_STEP) { step++; continue; }
      Slot& sl = a.op == Op::REDUCE_GRADS ? reduce[size_t(a.chunk)] : slot(a.op, a.mb, a.chunk);
      if (sl.count++ == 0) sl.pos = i;
      if ((is_compute(a.op) || is_copy(a.op)) && a.peer != -1)
        errors.push_back(at(r, i, a) + ": a " + (is_copy(a.op) ? "copy" : "compute") + " has no peer");
      if (!is_message(a.op) && !is_copy(a.op)) continue;
      const int want = place[size_t(partner_chunk(a.op, a.chunk))];
      if (is_copy(a.op) && want != r)
        errors.push_back(at(r, i, a) + ": chunk " + std::to_string(partner_chunk(a.op, a.chunk)) +
                         " runs on rank " + std::to_string(want) +
                         "; a hop between ranks is a SEND and a RECV, not a copy");
      else if (is_message(a.op) && want == r)
        errors.push_back(at(r, i, a) + ": chunks " + std::to_string(a.chunk) + " and " +
                         std::to_string(partner_chunk(a.op, a.chunk)) +
                         " are both on this rank; they hand over with a COPY, not a message");
      else if (is_message(a.op) && a.peer != want)
        errors.push_back(at(r, i, a) + ": peer must be rank " + std::to_string(want));
    }
    const int n = int(l.size());
    if (step != 1 || l[n - 1].op != Op::OPTIMIZER_STEP)
      errors.push_back("rank " + std::to_string(r) + ": list must end with OPTIMIZER_STEP and hold it once");
  }

  auto rk = [&](int c) { return " on rank " + std::to_string(place[size_t(c)]); };
  // Position of the single B or BI of (mb, c), or -1 if there is none or several.
  auto bwd_pos = [&](int mb, int c) {
    const Slot &b = slot(Op::B, mb, c), &bi = slot(Op::BI, mb, c);
    if (b.count == 1 && bi.count == 0) return b.pos;
    if (b.count == 0 && bi.count == 1) return bi.pos;
    return -1;
  };
  auto bwd_name = [&](int mb, int c) {
    return name(slot(Op::B, mb, c).count ? Op::B : Op::BI, mb, c);
  };
  // n1 (list position p1) must come before n2 (p2) on chunk c's rank; a
  // missing or repeated action (p < 0) is reported by the count checks instead.
  auto before = [&](int p1, const std::string& n1, int p2, const std::string& n2, int c,
                    const std::string& why) {
    if (p1 < 0 || p2 < 0) return;
    if (p1 > p2) errors.push_back(n1 + " must come before " + n2 + rk(c) + why);
  };
  auto pos_of = [](const Slot& sl) { return sl.count == 1 ? sl.pos : -1; };

  for (int c = 0; c < C; c++) {
    const bool local_prev = c > 0 && place[size_t(c - 1)] == place[size_t(c)];
    const bool local_next = c < C - 1 && place[size_t(c + 1)] == place[size_t(c)];
    int prev_b = -1, prev_w = -1;
    std::pair<int, std::string> last_bwd{-1, ""};  // latest backward of chunk c
    for (int mb = 0; mb < M; mb++) {
      const Slot &f = slot(Op::F, mb, c), &b = slot(Op::B, mb, c), &bi = slot(Op::BI, mb, c),
                 &bw = slot(Op::BW, mb, c);
      if (f.count != 1)
        errors.push_back(name(Op::F, mb, c) + rk(c) + " appears " + std::to_string(f.count) +
                         " times (expected 1)");
      const bool full = b.count == 1 && bi.count == 0 && bw.count == 0;
      const bool split = b.count == 0 && bi.count == 1 && bw.count == 1;
      if (!full && !split)
        errors.push_back("(mb=" + std::to_string(mb) + ", chunk=" + std::to_string(c) + ")" + rk(c) +
                         " has " + std::to_string(b.count) + " B, " + std::to_string(bi.count) +
                         " BI, " + std::to_string(bw.count) +
                         " BW (expected one B, or one BI and one BW)");
      for (Op op : {Op::SEND_F, Op::RECV_F, Op::SEND_B, Op::RECV_B, Op::COPY_F, Op::COPY_B})
        if (slot(op, mb, c).count > 1)
          errors.push_back(name(op, mb, c) + rk(c) + " appears " +
                           std::to_string(slot(op, mb, c).count) + " times (expected at most 1)");

      const int fp = f.count == 1 ? f.pos : -1;
      const int bp = (full || split) ? bwd_pos(mb, c) : -1;
      before(fp, name(Op::F, mb, c), bp, bwd_name(mb, c), c, "");
      if (split) before(bi.pos, name(Op::BI, mb, c), bw.pos, name(Op::BW, mb, c), c, "");
      if (bp >= 0) {
        if (prev_b > bp)
          errors.push_back(bwd_name(mb, c) + rk(c) + " runs before the backward of mb " +
                           std::to_string(mb - 1) + " (gradients accumulate in mb order)");
        prev_b = bp;
        const int last = split ? std::max(bp, bw.pos) : bp;
        if (last > last_bwd.first) last_bwd = {last, last == bp ? bwd_name(mb, c) : name(Op::BW, mb, c)};
      }
      if (split) {
        if (prev_w > bw.pos)
          errors.push_back(name(Op::BW, mb, c) + rk(c) + " runs before BW of mb " +
                           std::to_string(mb - 1) + " (gradients accumulate in mb order)");
        prev_w = bw.pos;
      }

      // Each needed transfer exists on the right side of its compute ...
      auto need = [&](Op op, bool applies, bool recv, int cp, const std::string& cn) {
        if (!applies || cp < 0) return;
        const Slot& m = slot(op, mb, c);
        if (m.count == 0)
          errors.push_back(cn + rk(c) + " has no " + name(op, mb, c) + (recv ? " before" : " after") +
                           " it");
        else if (m.count == 1 && (recv ? m.pos > cp : m.pos < cp))
          errors.push_back(name(op, mb, c) + rk(c) + " must come " + (recv ? "before " : "after ") + cn);
      };
      const std::string bn = bp >= 0 ? bwd_name(mb, c) : "";
      need(Op::RECV_F, c > 0 && !local_prev, true, fp, name(Op::F, mb, c));
      need(Op::SEND_F, c < C - 1 && !local_next, false, fp, name(Op::F, mb, c));
      need(Op::RECV_B, c < C - 1 && !local_next, true, bp, bn);
      need(Op::SEND_B, c > 0 && !local_prev, false, bp, bn);
      need(Op::COPY_F, local_next, false, fp, name(Op::F, mb, c));
      need(Op::COPY_B, local_prev, false, bp, bn);
      // ... a local hand-off lands before its consumer ...
      if (local_prev)
        before(pos_of(slot(Op::COPY_F, mb, c - 1)), name(Op::COPY_F, mb, c - 1), fp, name(Op::F, mb, c), c,
               " (its input)");
      if (local_next)
        before(pos_of(slot(Op::COPY_B, mb, c + 1)), name(Op::COPY_B, mb, c + 1), bp, bn, c,
               " (its output gradient)");
      // ... and every send has exactly one receive on the partner, and back.
      for (Op send : {Op::SEND_F, Op::SEND_B}) {
        const Op recv = send == Op::SEND_F ? Op::RECV_F : Op::RECV_B;
        const int pc = partner_chunk(send, c);
        if (pc < 0 || pc >= C) continue;
        const int ns = slot(send, mb, c).count, nr = slot(recv, mb, pc).count;
        if (ns >= 1 && nr == 0)
          errors.push_back(name(send, mb, c) + rk(c) + " has no matching " + name(recv, mb, pc) + rk(pc));
        if (ns == 0 && nr >= 1)
          errors.push_back(name(recv, mb, pc) + rk(pc) + " has no matching " + name(send, mb, c) + rk(c));
      }
    }
    const std::string rn = to_string(Action{Op::REDUCE_GRADS, -1, c});
    if (reduce[size_t(c)].count != 1)
      errors.push_back(rn + rk(c) + " appears " + std::to_string(reduce[size_t(c)].count) +
                       " times (expected 1)");
    else if (last_bwd.first > reduce[size_t(c)].pos)
      errors.push_back(rn + rk(c) + " must come after " + last_bwd.second + " (its last backward)");
  }
}

double cost_of(Op op, const SimCosts& k) {
  switch (op) {
    case Op::F: return k.F;
    case Op::B: return k.B;
    case Op::BI: return k.BI;
    case Op::BW: return k.BW;
    case Op::COPY_F:
    case Op::COPY_B: return k.copy;
    default: return 0;
  }
}

constexpr double kNever = std::numeric_limits<double>::infinity();

// One hop message. Like MPI's large messages, it moves once it is both sent
// and posted by its receiver (a rendezvous), and it shares its link's rate
// equally with the link's other moving messages.
struct Message {
  size_t link = 0;     // directed link src·P + dst
  double alone = 0;    // transfer time with the link to itself
  double left = 0;     // transfer time left at the link's full rate
  double sent = -1, posted = -1;
  double arrived = -1;  // transfer end
};

struct Link {
  std::vector<size_t> moving;  // messages on the link now
  double t = 0;                // time up to which `left` is accounted
};

// The executor's slots (parallel/slot_policy.h) and, per chunk and
// direction, the messages it has in flight, oldest first.
struct SimRank {
  SimRank(const Schedule& s, int r) : slots(s, r) {}
  double clock = 0;
  int pc = 0;
  int reached = -1;               // list position whose action has been reached
  double reached_at = 0;          // ... and when (a RECV's start)
  long wait = -1;                 // message the rank is blocked on (a RECV's, or its oldest send's), or -1
  bool waits_on_send = false;     // `wait` is a send's: no receive latency when it arrives
  SlotTable slots;
  // By 2 * chunk + (SEND_B ? 1 : 0), for the rank's own chunks only: a deque
  // per chunk of the whole pipeline on every rank would grow with P^2.
  std::map<size_t, std::deque<size_t>> in_flight;
};

// Replays one optimizer step the way the executor runs it: every rank works
// through its list in time order, receives are posted ahead into free slots,
// and message transfers share their links. See the timing model in
// simulator.h.
class Timeline {
 public:
  Timeline(const Schedule& s, const SimCosts& k, SimResult& res)
      : s_(s), k_(k), res_(res), P_(s.P), M_(s.M), C_(s.num_chunks()) {
    msgs_.resize(size_t(2) * M_ * C_);
    for (int r = 0; r < P_; r++) ranks_.emplace_back(s, r);
    reduced_.assign(size_t(P_), 0.0);
    res_.ranks.assign(size_t(P_), RankStats{});
    for (RankStats& st : res_.ranks) st.finish = -1;
  }

  void run() {
    for (;;) {
      const int r = next_rank();
      size_t link = 0;
      const double done = next_arrival(link);
      if (done < kNever && (r < 0 || done <= ranks_[size_t(r)].clock)) {
        arrive(link, done);
        continue;
      }
      if (r < 0) break;
      step(r);
    }
    report();
  }

 private:
  // Message of (direction, microbatch, sending chunk).
  size_t msg_id(bool fwd, int mb, int c) const { return (size_t(fwd ? 0 : 1) * M_ + mb) * C_ + c; }
  size_t send_id(const Action& a) const { return msg_id(a.op == Op::SEND_F, a.mb, a.chunk); }
  size_t recv_id(const Action& a) const {
    return msg_id(a.op == Op::RECV_F, a.mb, partner_chunk(a.op, a.chunk));
  }

  bool runnable(int r) const {
    const SimRank& R = ranks_[size_t(r)];
    return R.wait < 0 && R.pc < int(s_.ranks[size_t(r)].size());
  }

  int next_rank() const {
    int best = -1;
    for (int r = 0; r < P_; r++)
      if (runnable(r) && (best < 0 || ranks_[size_t(r)].clock < ranks_[size_t(best)].clock)) best = r;
    return best;
  }

  // Earliest end of a moving transfer (kNever if none), and its link.
  double next_arrival(size_t& link) const {
    double best = kNever;
    for (size_t l : busy_links_) {
      const Link& L = links_.at(l);
      for (size_t m : L.moving) {
        const double t = L.t + std::max(msgs_[m].left, 0.0) * double(L.moving.size());
        if (t < best) best = t, link = l;
      }
    }
    return best;
  }

  void advance(Link& L, double t) {
    const double share = (t - L.t) / double(std::max<size_t>(L.moving.size(), 1));
    for (size_t m : L.moving) msgs_[m].left -= share;
    L.t = t;
  }

  void start(size_t m, double t) {
    Message& msg = msgs_[m];
    if (msg.alone == 0) return finish(m, t);
    Link& L = links_[msg.link];
    advance(L, t);
    msg.left = msg.alone;
    if (L.moving.empty()) busy_links_.push_back(msg.link);
    L.moving.push_back(m);
  }

  void arrive(size_t link, double t) {
    Link& L = links_[link];
    advance(L, t);
    auto first = std::min_element(L.moving.begin(), L.moving.end(),
                                  [&](size_t a, size_t b) { return msgs_[a].left < msgs_[b].left; });
    const size_t m = *first;
    L.moving.erase(first);
    if (L.moving.empty()) busy_links_.erase(std::find(busy_links_.begin(), busy_links_.end(), link));
    finish(m, t);
  }

  void finish(size_t m, double t) {
    msgs_[m].arrived = t;
    for (SimRank& R : ranks_)
      if (R.wait == long(m)) {
        R.clock = std::max(R.clock, R.waits_on_send ? t : t + k_.latency);  // a RECV ends `latency` later
        R.waits_on_send = false;
        R.wait = -1;
      }
  }

  void send(const Action& a, double t) {
    const size_t m = send_id(a);
    Message& msg = msgs_[m];
    const int hop = a.op == Op::SEND_F ? a.chunk + 1 : a.chunk;  // downstream chunk
    const std::vector<double>& cost = a.op == Op::SEND_B && !k_.hop_bwd.empty() ? k_.hop_bwd : k_.hop;
    msg.link = size_t(s_.placement[size_t(a.chunk)]) * P_ + size_t(a.peer);
    msg.alone = cost.empty() ? 0.0 : cost[size_t(hop)];
    msg.sent = t;
    if (msg.posted >= 0) start(m, t);
  }

  void post(const Action& a, double t) {
    const size_t m = recv_id(a);
    if (msgs_[m].posted >= 0) return;
    msgs_[m].posted = t;
    if (msgs_[m].sent >= 0) start(m, t);
  }

  // A receive's buffer: RECV_F takes a slot (its own or a free one), RECV_B
  // needs its own. False if there is none.
  bool recv_slot(int r, const Action& a) {
    SlotTable& t = ranks_[size_t(r)].slots;
    return a.op == Op::RECV_F ? acquire(r, a.mb, a.chunk) : t.find(a.chunk, a.mb) >= 0;
  }

  bool acquire(int r, int mb, int c) { return ranks_[size_t(r)].slots.acquire(c, mb).slot >= 0; }

  // Runs rank r's next action at its clock, or blocks it on a message.
  void step(int r) {
    SimRank& R = ranks_[size_t(r)];
    const double now = R.clock;
    const Action& a = s_.ranks[size_t(r)][size_t(R.pc)];
    RankStats& st = res_.ranks[size_t(r)];
    if (R.reached != R.pc) {
      if (a.op != Op::OPTIMIZER_STEP)
        R.slots.post_ahead(s_.ranks[size_t(r)], size_t(R.pc), P_, [&](const Action& x) {
          if (recv_slot(r, x)) post(x, now);
        });
      R.reached = R.pc;
      R.reached_at = now;
    }
    double end = now;
    if (a.op == Op::RECV_F || a.op == Op::RECV_B) {
      if (!recv_slot(r, a)) return fail(r, a, "has no free activation slot");
      post(a, now);
      const Message& msg = msgs_[recv_id(a)];
      if (msg.arrived < 0) return block(R, recv_id(a));
      end = R.clock = std::max(now, msg.arrived + k_.latency);
    } else if (a.op == Op::SEND_F || a.op == Op::SEND_B) {
      if (R.slots.find(a.chunk, a.mb) < 0) return fail(r, a, "sends from a microbatch the chunk does not hold");
      std::deque<size_t>& q = R.in_flight[size_t(2 * a.chunk + (a.op == Op::SEND_B ? 1 : 0))];
      while (!q.empty() && msgs_[q.front()].arrived >= 0) q.pop_front();
      if (int(q.size()) >= k_.sends_in_flight) {
        R.waits_on_send = true;
        return block(R, q.front());
      }
      send(a, now);
      q.push_back(send_id(a));
    } else if (is_compute(a.op) || is_copy(a.op)) {
      if (a.op == Op::F && !acquire(r, a.mb, a.chunk)) return fail(r, a, "has no free activation slot");
      if (a.op == Op::COPY_F && !acquire(r, a.mb, a.chunk + 1))
        return fail(r, a, "has no free activation slot for the next chunk");
      end = R.clock += cost_of(a.op, k_);
      st.busy += cost_of(a.op, k_);
    } else if (a.op == Op::REDUCE_GRADS) {  // runs beside the compute
      end = reduced_[size_t(r)] = std::max(reduced_[size_t(r)], now) + k_.reduce;
    } else if (a.op == Op::OPTIMIZER_STEP) {
      end = R.clock = std::max(now, reduced_[size_t(r)]);
      if (st.finish < 0) st.finish = R.clock;
    }
    st.timeline.push_back({R.pc, a, R.reached_at, end});
    R.pc++;
    if (const int left = R.slots.after(a); left >= 0) R.slots.release(a.chunk, left);
  }

  void block(SimRank& R, size_t m) { R.wait = long(m); }

  void fail(int r, const Action& a, const std::string& why) {
    res_.errors.push_back(at(r, ranks_[size_t(r)].pc, a) + " " + why);
    ranks_[size_t(r)].pc = int(s_.ranks[size_t(r)].size());  // stop this rank
  }

  void report() {
    std::string blocked;
    for (int r = 0; r < P_; r++) {
      const SimRank& R = ranks_[size_t(r)];
      RankStats& st = res_.ranks[size_t(r)];
      if (R.pc < int(s_.ranks[size_t(r)].size()))
        blocked += (blocked.empty() ? "" : ", ") + at(r, R.pc, s_.ranks[size_t(r)][size_t(R.pc)]);
      if (st.finish < 0) st.finish = R.clock;
      res_.makespan = std::max(res_.makespan, st.finish);
    }
    if (!blocked.empty()) res_.errors.push_back("deadlock: no rank can progress; waiting: " + blocked);
    for (int r = 0; r < P_; r++) {
      RankStats& st = res_.ranks[size_t(r)];
      st.idle = res_.makespan - st.busy;
      st.bubble = res_.makespan > 0 ? st.idle / res_.makespan : 0.0;
      int live = 0;
      for (const Action& a : s_.ranks[size_t(r)]) {
        if (a.op == Op::F) st.peak_live = std::max(st.peak_live, ++live);
        if (a.op == Op::B || a.op == Op::BW) live--;
      }
    }
  }

  const Schedule& s_;
  const SimCosts& k_;
  SimResult& res_;
  const int P_, M_, C_;
  std::vector<Message> msgs_;
  // By sender * P + receiver: only the links used, and the ones moving a
  // message now, so that neither memory nor a step's time grows with P^2.
  std::unordered_map<size_t, Link> links_;
  std::vector<size_t> busy_links_;
  std::vector<SimRank> ranks_;
  std::vector<double> reduced_;  // by rank: when its last started reduction ends
};

}  // namespace

std::string simulation_limit_error(int P, int V, int M) {
  const int64_t work = int64_t(P) * P * V * M;
  if (P <= kMaxSimulatedRanks && work <= kMaxSimulatedWork) return "";
  return "simulating P=" + std::to_string(P) + " ranks x V=" + std::to_string(V) + " x M=" + std::to_string(M) +
         " microbatches: the simulator takes at most " + std::to_string(kMaxSimulatedRanks) +
         " ranks and P x P x V x M <= " + std::to_string(kMaxSimulatedWork) + " (here " + std::to_string(work) +
         "); use fewer ranks or microbatches";
}

SimResult simulate(const Schedule& s, const SimCosts& costs) {
  if (const std::string e = simulation_limit_error(s.P, s.V, s.M); !e.empty()) throw std::invalid_argument(e);
  for (auto [n, c] : {std::pair{"F", costs.F}, {"B", costs.B}, {"BI", costs.BI}, {"BW", costs.BW},
                      {"latency", costs.latency}, {"copy", costs.copy}, {"reduce", costs.reduce}})
    if (!std::isfinite(c) || c < 0)
      throw std::invalid_argument(std::string("simulator cost ") + n + "=" + std::to_string(c) +
                                  " must be finite and >= 0");
  if (costs.sends_in_flight < 1)
    throw std::invalid_argument("simulator sends_in_flight=" + std::to_string(costs.sends_in_flight) + " must be >= 1");
  for (const std::vector<double>* hops : {&costs.hop, &costs.hop_bwd})
    for (double h : *hops)
      if (!std::isfinite(h) || h < 0)
        throw std::invalid_argument("simulator hop cost " + std::to_string(h) + " must be finite and >= 0");
  SimResult res;
  check_shape(s, res.errors);
  for (const std::vector<double>* hops : {&costs.hop, &costs.hop_bwd})
    if (res.ok() && !hops->empty() && int(hops->size()) != s.num_chunks())
      throw std::invalid_argument("simulator has " + std::to_string(hops->size()) +
                                  " hop costs for " + std::to_string(s.num_chunks()) + " chunks");
  if (!res.ok()) return res;
  check_structure(s, res.errors);
  Timeline(s, costs, res).run();
  return res;
}

}  // namespace attnres
