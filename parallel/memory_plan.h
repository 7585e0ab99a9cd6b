// Device memory of one pipeline rank, as the executor (parallel/executor.h)
// allocates it, computed from the layout functions the runtime allocates with
// (models/chunk.h chunk_floats). `attnres plan` prints it; a test checks it
// against the allocator's byte counter.
//
// Per local chunk: parameters, gradients, RoPE tables and backward scratch
// once, plus `slots` activation slots. A slot holds one microbatch's
// activation arena and the hop buffers of that microbatch: the receive buffers
// of the forward payload into the chunk and of the backward payload from the
// next chunk, the gradient buffers of the sources the chunk received or
// produced, and (standard mode, last chunk) the gradient of the output.
// Under full or block recomputation the slots share one arena, the size of
// the chunk's largest recompute segment, and each keeps instead copies of
// what its segments produce (recompute_kept_outputs).
// Per chunk, the staging buffers of the messages it sends to other ranks
// (hop_send_buffers: parallel.sends_in_flight per direction).
// The optimizer's state (AdamW's moments, and in a bf16 run the fp32 master
// weights: 2 or 3 floats per parameter, or under ZeRO-1 per parameter of
// this rank's part) belongs to the trainer: `adamw`, outside what the
// executor allocates. The chunks' weights (`params`) are in the run's
// precision: fp32, or bf16 and the vectors widened to fp32.
#pragma once
#include <cstdint>
#include <vector>

#include "models/chunk.h"
#include "parallel/hop_payload.h"
#include "parallel/partition.h"
#include "parallel/schedule.h"

namespace attnres {

struct MemoryBytes {
  uint64_t params = 0, grads = 0;  // grads: ZeRO-1 adds the buffer of the part's summed gradients
  uint64_t fixed = 0;  // RoPE tables and backward scratch (and in a rank's total, its loss sums)
  uint64_t acts = 0;   // slots x one microbatch's arena
  uint64_t hops = 0;   // slots x the slot's hop buffers
  uint64_t adamw = 0;  // AdamW's moments m and v; a bf16 run's fp32 master weights
  uint64_t executor() const { return params + grads + fixed + acts + hops; }
  uint64_t total() const { return executor() + adamw; }
  MemoryBytes& operator+=(const MemoryBytes& o);
};

struct ChunkMemoryPlan {
  int chunk = 0;
  int slots = 0;
  uint64_t arena_bytes = 0;  // one microbatch's activations
  int hop_buffers = 0;       // [b, T, d] buffers per slot
  MemoryBytes bytes;
};

struct RankMemoryPlan {
  std::vector<ChunkMemoryPlan> chunks;  // the rank's chunks, in chunk order
  MemoryBytes total;
};

// ZeRO-1 (train.zero: 1): this rank's index among the `parts` dp ranks over
// which each chunk's AdamW state and summed gradients are split
// (split_evenly). parts = 1: not sharded.
struct ZeroShard {
  int index = 0, parts = 1;
};

// `tp`: this rank's tensor-parallel shard (its collectives are not used).
RankMemoryPlan plan_rank_memory(const ModelConfig& cfg, const Partition& part, const Schedule& schedule,
                                int rank, int micro_batch, HopCaching caching,
                                const TensorParallel& tp = {}, ZeroShard zero = {});

}  // namespace attnres
