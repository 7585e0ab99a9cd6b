// The pipeline schedule IR (DESIGN §3): where each chunk runs, and for each
// pipeline rank the ordered list of actions it performs in one optimizer
// step. Generators build it for GPipe, 1F1B, interleaved 1F1B and ZB-H1; the
// simulator (simulator.h) checks and times it; the executor runs it. Nothing
// else decides placement, peers or hand-offs: they are all in here.
//
// Chunks and placement. There are C = P·V chunks c = 0 … C−1 (V per rank);
// placement[c] is the rank that runs chunk c. Chunk 0 holds the embedding,
// chunk C−1 the loss. A forward goes c → c+1, a backward c+1 → c. Every
// generator here places chunk c on rank c mod P (Megatron's interleaving).
//
// Actions. Every field that does not apply is −1. The chunk of an action is
// always a chunk placed on the rank executing it.
//   F(mb, c)            forward of microbatch mb through chunk c.
//   B(mb, c)            full backward of (mb, c): input and weight gradients.
//   BI(mb, c)           input-gradient half of the backward (what SEND_B sends);
//   BW(mb, c)           weight-gradient half. zb-h1 uses BI+BW, the others B.
//   SEND_F(mb, c, p)    send chunk c's forward output to rank p = placement[c+1].
//   RECV_F(mb, c, p)    receive chunk c's forward input (chunk c−1's output)
//                       from rank p = placement[c−1].
//   SEND_B(mb, c, p)    send chunk c's input gradient to rank p = placement[c−1].
//   RECV_B(mb, c, p)    receive the gradient of chunk c's output from rank p
//                       = placement[c+1].
//   COPY_F(mb, c)       chunk c+1 is on the same rank: hand chunk c's forward
//                       output to it in local memory.
//   COPY_B(mb, c)       chunk c−1 is on the same rank: hand chunk c's input
//                       gradient to it in local memory.
//   REDUCE_GRADS(c)     start the data-parallel reduction of chunk c's
//                       gradients; comes after chunk c's last backward, so it
//                       overlaps whatever the rank still computes.
//   OPTIMIZER_STEP      wait for every reduction, then update. Last in every list.
// So a message is named by each side with its own chunk:
// SEND_F(mb, c) pairs with RECV_F(mb, c+1), SEND_B(mb, c) with RECV_B(mb, c−1).
// A hop between chunks on different ranks is a SEND/RECV pair, a hop between
// chunks on the same rank is one COPY (P = 1 has only copies).
//
// Order. Sends and copies come right after the compute that produces them,
// receives right before the compute that consumes them. Sends are
// non-blocking; an executor should post each receive early (scan ahead in the
// list and post the irecv as soon as a buffer is free) and wait on it at the
// consuming compute. REDUCE_GRADS(c) comes right after the last backward of
// chunk c (and its SEND_B / COPY_B).
//
// Order guarantees of every generator: on each chunk the backwards (B or BI)
// run in microbatch order, and so do the BWs, because gradients accumulate in
// microbatch order (DESIGN §5).
#pragma once
#include <string>
#include <vector>

namespace attnres {

enum class Op { F, B, BI, BW, SEND_F, RECV_F, SEND_B, RECV_B, COPY_F, COPY_B, REDUCE_GRADS, OPTIMIZER_STEP };

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
  std::vector<int> placement;              // placement[c] = rank that runs chunk c
  std::vector<std::vector<Action>> ranks;  // ranks[r] = ordered action list of rank r
  int num_chunks() const { return P * V; }
  // The chunks placed on `rank`, ascending.
  std::vector<int> chunks_of(int rank) const;
};

inline bool is_compute(Op op) { return op == Op::F || op == Op::B || op == Op::BI || op == Op::BW; }
inline bool is_message(Op op) {
  return op == Op::SEND_F || op == Op::RECV_F || op == Op::SEND_B || op == Op::RECV_B;
}
inline bool is_copy(Op op) { return op == Op::COPY_F || op == Op::COPY_B; }

// Builds the named schedule ("gpipe", "1f1b", "eager-1f1b", "interleaved",
// "zb-h1") for P ranks, M microbatches and V chunks per rank. eager-1f1b is
// 1F1B with one more warm-up forward on every rank but the last: one more
// microbatch in flight (and one more activation slot), so that a hop's
// round trip, a forward message out and a gradient back, can hide under
// compute on a slow link. V must be 1 except for
// "interleaved", which needs V >= 2 and M % P == 0. Throws
// std::invalid_argument naming the bad value otherwise.
Schedule make_schedule(const std::string& name, int P, int M, int V = 1);

// The generator names accepted by make_schedule.
const std::vector<std::string>& schedule_names();

// Activation slots of each chunk on `rank`: the peak number of microbatches
// live on the chunk in the rank's action list (from its F to its B or BW),
// plus one, except for chunk 0, so the next forward's input can arrive (a
// receive posted early, or a local copy) while the slots are full. Indexed
// by chunk; 0 for chunks of other ranks.
std::vector<int> activation_slots(const Schedule& schedule, int rank);

const char* op_name(Op op);
// "F(mb=3, chunk=1)", "SEND_B(mb=0, chunk=2, peer=1)", "REDUCE_GRADS(chunk=1)",
// "OPTIMIZER_STEP".
std::string to_string(const Action& a);

}  // namespace attnres
