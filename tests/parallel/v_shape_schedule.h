// A hand-built schedule whose placement no generator makes: P = 2, V = 2,
// M = 1, chunks placed 0, 1, 1, 0 (the "V" shape), so chunks 1 and 2 share
// rank 1 and hand over by copy while the other hops are messages.
#pragma once
#include "parallel/schedule.h"

inline attnres::Schedule v_shape_schedule() {
  using attnres::Action;
  using attnres::Op;
  attnres::Schedule s;
  s.name = "v-shape";
  s.P = 2, s.M = 1, s.V = 2;
  s.placement = {0, 1, 1, 0};
  s.ranks = {{{Op::F, 0, 0}, {Op::SEND_F, 0, 0, 1}, {Op::RECV_F, 0, 3, 1}, {Op::F, 0, 3}, {Op::B, 0, 3},
              {Op::SEND_B, 0, 3, 1}, {Op::REDUCE_GRADS, -1, 3}, {Op::RECV_B, 0, 0, 1}, {Op::B, 0, 0},
              {Op::REDUCE_GRADS, -1, 0}, {Op::OPTIMIZER_STEP}},
             {{Op::RECV_F, 0, 1, 0}, {Op::F, 0, 1}, {Op::COPY_F, 0, 1}, {Op::F, 0, 2}, {Op::SEND_F, 0, 2, 0},
              {Op::RECV_B, 0, 2, 0}, {Op::B, 0, 2}, {Op::COPY_B, 0, 2}, {Op::REDUCE_GRADS, -1, 2}, {Op::B, 0, 1},
              {Op::SEND_B, 0, 1, 0}, {Op::REDUCE_GRADS, -1, 1}, {Op::OPTIMIZER_STEP}}};
  return s;
}
