#include "parallel/memory_plan.h"

#include <algorithm>
#include <limits>
#include <stdexcept>

#include "kernels/dtype.h"
#include "models/recompute.h"
#include "parallel/communicator.h"
#include "parallel/hop_payload.h"

namespace attnres {

namespace k = kernels;

// A byte count of the plan past 2^64 (16 EiB) is refused, never wrapped.
static uint64_t bytes(unsigned __int128 x) {
  if (x > std::numeric_limits<uint64_t>::max())
    throw std::invalid_argument("memory plan: a rank would need more than 2^64 bytes (16 EiB); make the model, "
                                "train.micro_batch_size or the microbatches in flight smaller");
  return uint64_t(x);
}
static uint64_t times(uint64_t a, uint64_t b) { return bytes((unsigned __int128)a * b); }
static uint64_t plus(uint64_t a, uint64_t b) { return bytes((unsigned __int128)a + b); }

MemoryBytes& MemoryBytes::operator+=(const MemoryBytes& o) {
  params = plus(params, o.params), grads = plus(grads, o.grads), fixed = plus(fixed, o.fixed);
  acts = plus(acts, o.acts), hops = plus(hops, o.hops), adamw = plus(adamw, o.adamw);
  bytes((unsigned __int128)params + grads + fixed + acts + hops + adamw);  // and so does total()
  return *this;
}

// Buffers of one [b, T, d] tensor each that a slot of chunk c holds.
static int hop_buffers(const ModelConfig& cfg, const Partition& part, int c, HopCaching caching) {
  const int C = part.num_chunks();
  const ChunkRange& r = part.chunks[size_t(c)];
  int n = 0;
  if (c > 0) {
    n += int(hop_payload(cfg, part, c, caching.forward).tensors.size());  // forward receive
    for (const HopTensor& h : hop_payload(cfg, part, c, caching.backward).tensors)
      n += h.kind == HopTensor::Source ? 1 : 0;  // gradients sent back
  }
  if (c + 1 < C) n += int(hop_payload(cfg, part, c + 1, caching.backward).tensors.size());  // backward receive
  if (cfg.attnres()) n += sources_at(cfg, r.last) - (c == 0 ? 0 : sources_at(cfg, r.first));  // produced sources
  if (!cfg.attnres() && r.has_head) ++n;  // gradient of the output
  return n;
}

RankMemoryPlan plan_rank_memory(const ModelConfig& cfg, const Partition& part, const Schedule& schedule,
                                int rank, int micro_batch, HopCaching caching,
                                const TensorParallel& tp, ZeroShard zero) {
  if (part.num_chunks() != schedule.num_chunks())
    throw std::logic_error("memory plan: partition and schedule disagree on chunks");
  if (zero.parts < 1 || zero.index < 0 || zero.index >= zero.parts)
    throw std::logic_error("memory plan: ZeRO-1 part " + std::to_string(zero.index) + " of " +
                           std::to_string(zero.parts));
  const std::vector<int> slots = activation_slots(schedule, rank);
  const ChunkDims dims = chunk_dims(cfg, micro_batch, tp);
  const uint64_t tensor_bytes = uint64_t(dims.Nr) * dims.d * sizeof(float);
  const uint64_t wire_bytes = uint64_t(dims.Nr) * dims.d * k::dtype_size(k::DType::BF16);
  RankMemoryPlan plan;
  for (int c = 0; c < part.num_chunks(); ++c) {
    if (slots[size_t(c)] == 0) continue;
    const ChunkRange& r = part.chunks[size_t(c)];
    const ChunkFloats f = chunk_floats(cfg, r.first, r.last, micro_batch, tp);
    ChunkMemoryPlan ch;
    ch.chunk = c;
    ch.slots = slots[size_t(c)];
    ch.arena_bytes = f.acts * sizeof(float);
    ch.hop_buffers = hop_buffers(cfg, part, c, caching);
    ch.bytes.params = (f.params + f.widened) * sizeof(float) + f.compute_weights * k::dtype_size(k::DType::BF16);
    ch.bytes.grads = f.grads * sizeof(float);
    // ZeRO-1: AdamW for this rank's part; its summed gradients in a buffer of the largest part.
    const std::vector<size_t> parts = split_evenly(f.grads, zero.parts);
    if (zero.parts > 1) ch.bytes.grads += parts.front() * sizeof(float);
    const int adamw_floats = cfg.bf16() ? 3 : 2;  // m, v, and a bf16 run's fp32 master weights
    ch.bytes.adamw = adamw_floats * parts[size_t(zero.index)] * sizeof(float);
    ch.bytes.fixed = (f.rope + f.scratch) * sizeof(float);
    // Recomputation: one arena for the largest segment, shared, and per slot
    // what the segments produce.
    if (!recompute_segments(cfg, r.first, r.last).empty()) {
      ch.arena_bytes = recompute_arena_floats(cfg, r.first, r.last, micro_batch, tp) * sizeof(float);
      const int kept = recompute_kept_outputs(cfg, r.first, r.last);
      ch.bytes.acts = plus(ch.arena_bytes, times(times(uint64_t(ch.slots), uint64_t(kept)), tensor_bytes));
    } else {
      ch.bytes.acts = times(uint64_t(ch.slots), ch.arena_bytes);
    }
    const uint64_t slots = uint64_t(ch.slots);
    const uint64_t wire = uint64_t(hop_receive_wire_buffers(cfg, part, c, caching));
    const uint64_t sends = uint64_t(hop_send_buffers(cfg, part, schedule.placement, c, caching));
    ch.bytes.hops = plus(plus(times(times(slots, uint64_t(ch.hop_buffers)), tensor_bytes), times(times(slots, wire), wire_bytes)),
                         times(sends, cfg.hop_dtype == k::DType::BF16 ? wire_bytes : tensor_bytes));
    plan.total += ch.bytes;
    plan.chunks.push_back(ch);
  }
  plan.total.fixed = plus(plan.total.fixed, uint64_t(schedule.M) * sizeof(double));  // the executor's loss sum per microbatch
  return plan;
}

}  // namespace attnres
