// The pipeline schedule IR (DESIGN §3): for each pipeline rank, the ordered
// list of actions it performs in one optimizer step. Generators build the lists
// for GPipe, 1F1B, interleaved 1F1B and ZB-H1; the simulator (simulator.h)
// checks and times them; the executor runs them on real ranks.
//
// Chunks. There are C = P·V chunks c = 0 … C−1 (V virtual chunks per rank);
// chunk c runs on rank c mod P. Chunk 0 holds the embedding, chunk C−1 the
// loss. A forward goes c → c+1, a backward c+1 → c.
//
// Actions. Every field that does not apply is −1. The chunk of an action is
// always a chunk that lives on the rank executing it.
//   F(mb, c)            forward of microbatch mb through chunk c.
//   B(mb, c)            full backward of (mb, c): input and weight gradients.
//   BI(mb, c)           input-gradient half of the backward (what SEND_B sends);
//   BW(mb, c)           weight-gradient half. zb-h1 uses BI+BW, the others B.
//   SEND_F(mb, c, p)    send chunk c's forward output to rank p (= rank of c+1).
//   RECV_F(mb, c, p)    receive chunk c's forward input (chunk c−1's output)
//                       from rank p (= rank of c−1).
//   SEND_B(mb, c, p)    send chunk c's input gradient to rank p (= rank of c−1).
//   RECV_B(mb, c, p)    receive the gradient of chunk c's output from rank p
//                       (= rank of c+1).
//   REDUCE_GRADS        data-parallel gradient reduction; then
//   OPTIMIZER_STEP      the update. Every list ends with exactly these two.
// So a message is named by each side with its own chunk:
// SEND_F(mb, c) pairs with RECV_F(mb, c+1), SEND_B(mb, c) with RECV_B(mb, c−1).
//
// Placement. Sends come right after the compute that produces them, receives
// right before the compute that consumes them. Sends are non-blocking; an
// executor should post each receive early (scan ahead in the list and post
// the irecv as soon as a buffer is free) and wait on it at the RECV action.
//
// P = 1: every chunk is on rank 0 and there are no messages at all; the
// executor hands chunk outputs/gradients from c to c±1 in local memory. The
// list then orders F(mb, c−1) before F(mb, c) and B(mb, c+1) before B(mb, c).
//
// Order guarantees of every generator: on each chunk the backwards (B or BI)
// run in microbatch order, and so do the BWs, because gradients accumulate in
// microbatch order (DESIGN §5).
#pragma once
#include <string>
#include <vector>

namespace attnres {

enum class Op { F, B, BI, BW, SEND_F, RECV_F, SEND_B, RECV_B, REDUCE_GRADS, OPTIMIZER_STEP };

struct Action {
  Op op;
  int mb = -1;
  int chunk = -1;
  int peer = -1;
  bool operator==(const Action&) const = default;
};

struct Schedule {
  std::string name;
  int P = 0, M = 0, V = 0;                 // ranks, microbatches, chunks per rank
  std::vector<std::vector<Action>> ranks;  // ranks[r] = ordered action list of rank r
  int num_chunks() const { return P * V; }
};

inline int chunk_rank(int chunk, int P) { return chunk % P; }
inline bool is_compute(Op op) { return op == Op::F || op == Op::B || op == Op::BI || op == Op::BW; }

// Builds the named schedule ("gpipe", "1f1b", "interleaved", "zb-h1") for P
// ranks, M microbatches and V chunks per rank. V must be 1 except for
// "interleaved", which needs V >= 2 and M % P == 0. Throws
// std::invalid_argument naming the bad value otherwise.
Schedule make_schedule(const std::string& name, int P, int M, int V = 1);

// The generator names accepted by make_schedule.
const std::vector<std::string>& schedule_names();

const char* op_name(Op op);
// "F(mb=3, chunk=1)", "SEND_B(mb=0, chunk=2, peer=1)", "REDUCE_GRADS".
std::string to_string(const Action& a);

}  // namespace attnres
