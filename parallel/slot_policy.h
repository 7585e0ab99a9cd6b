// One rank's activation slots and the rules for them, which the executor
// follows and the simulator models (DESIGN §3), in one place:
//  - Each chunk has activation_slots() slots. F, COPY_F into a chunk and a
//    posted RECV_F take one: the microbatch's own, else a free one.
//  - A microbatch leaves its slot once its weight gradients are done (B, BW)
//    and its input gradient has gone back (SEND_B, COPY_B; chunk 0 sends
//    none). The caller frees the slot once the slot's sends are done with it.
//  - Receives are posted ahead: before each action, the later receives whose
//    slot is available (RECV_F: its own or a free one; RECV_B: its own), in
//    list order per peer, stopping at a peer's first that must wait. NCCL
//    pairs a peer's sends and receives by issue order, and the lists issue
//    them in matching orders (tests/parallel/test_executor.cpp,
//    PeersIssueSendsAndReceivesInTheSameOrder).
#pragma once
#include <cstddef>
#include <vector>

#include "parallel/schedule.h"

namespace attnres {

class SlotTable {
 public:
  SlotTable(const Schedule& s, int rank);

  // The slot of (mb, chunk), or -1.
  int find(int chunk, int mb) const;
  // The slot of (mb, chunk), taking a free one if it has none (fresh: it was
  // free); slot -1 if every slot is taken.
  struct Taken {
    int slot;
    bool fresh;
  };
  Taken acquire(int chunk, int mb);
  // Whether receive `a` has a slot for its buffers now.
  bool can_receive(const Action& a) const;
  // Records that `a` ran; returns the slot its microbatch now leaves, or -1.
  int after(const Action& a);
  void release(int chunk, int slot);

  // Calls post(a) for each receive of list[from..] to post now, in list
  // order; post must take a RECV_F's slot (acquire) before returning.
  template <class Post>
  void post_ahead(const std::vector<Action>& list, size_t from, int P, Post&& post) {
    std::vector<bool> blocked(size_t(P), false);  // by peer
    for (size_t i = from; i < list.size(); ++i) {
      const Action& a = list[i];
      if ((a.op != Op::RECV_F && a.op != Op::RECV_B) || blocked[size_t(a.peer)]) continue;
      if (can_receive(a)) post(a);
      else blocked[size_t(a.peer)] = true;
    }
  }

 private:
  struct State {
    int mb = -1;  // -1: free
    bool weights_done = false, grad_sent = false;
  };
  std::vector<std::vector<State>> slots_;  // by chunk
};

}  // namespace attnres
