#include "parallel/slot_policy.h"

namespace attnres {

SlotTable::SlotTable(const Schedule& s, int rank) {
  for (int n : activation_slots(s, rank)) slots_.emplace_back(size_t(n));
}

int SlotTable::find(int chunk, int mb) const {
  const std::vector<State>& v = slots_[size_t(chunk)];
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i].mb == mb) return int(i);
  return -1;
}

SlotTable::Taken SlotTable::acquire(int chunk, int mb) {
  if (const int i = find(chunk, mb); i >= 0) return {i, false};
  const int i = find(chunk, -1);
  if (i >= 0) slots_[size_t(chunk)][size_t(i)] = State{mb, false, false};
  return {i, i >= 0};
}

bool SlotTable::can_receive(const Action& a) const {
  if (a.op == Op::RECV_B) return find(a.chunk, a.mb) >= 0;
  return find(a.chunk, a.mb) >= 0 || find(a.chunk, -1) >= 0;
}

int SlotTable::after(const Action& a) {
  if (a.op != Op::B && a.op != Op::BW && a.op != Op::SEND_B && a.op != Op::COPY_B) return -1;
  const int i = find(a.chunk, a.mb);
  if (i < 0) return -1;
  State& s = slots_[size_t(a.chunk)][size_t(i)];
  s.weights_done |= a.op == Op::B || a.op == Op::BW;
  s.grad_sent |= a.op == Op::SEND_B || a.op == Op::COPY_B || a.chunk == 0;
  return s.weights_done && s.grad_sent ? i : -1;
}

void SlotTable::release(int chunk, int slot) { slots_[size_t(chunk)][size_t(slot)] = State{}; }

}  // namespace attnres
