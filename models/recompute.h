// Recomputation of a chunk (cfg.recompute, DESIGN §9): the policy that cuts
// a chunk into segments, and the loop that runs them. The forward runs one
// segment at a time and keeps copies of only what each segment produces;
// the backward runs each segment's forward again, from the last back, in one
// arena that the segments and the microbatches share.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/memory.h"
#include "models/chunk.h"

namespace attnres {

// What the backward of the chunk [first, last) runs the forward of again, one
// at a time, under cfg.recompute: the whole chunk (full), or the part of each
// AttnRes block inside it (block); none otherwise.
struct SublayerRange {
  int first, last;
};
std::vector<SublayerRange> recompute_segments(const ModelConfig& cfg, int first, int last);

// [Nr, d] tensors a microbatch keeps under recomputation, so that each
// segment's forward can run again and the chunk's output can leave: what
// every segment produces (chunk_produced_outputs of its range), except the
// last segment of the model's last chunk (its outputs leave nowhere).
int recompute_kept_outputs(const ModelConfig& cfg, int first, int last);

// Floats of the arena the segments share: the largest segment's.
size_t recompute_arena_floats(const ModelConfig& cfg, int first, int last, int micro_batch,
                              const TensorParallel& tp);

// One chunk's segments (views of it) and their shared arena; empty when
// cfg.recompute does not cut the chunk.
struct RecomputedChunk {
  std::vector<Chunk> segments;
  std::vector<ChunkActs> acts;  // carved into arena
  kernels::DeviceBuffer<float> arena;
  bool on() const { return !segments.empty(); }
};
void recompute_init(RecomputedChunk& r, const Chunk& c);

// What one microbatch keeps between its forward and its backward: the
// copies (recompute_kept_outputs buffers of [Nr, d], owned by the caller)
// and the input stream of each segment.
struct RecomputeKept {
  std::vector<float*> kept;
  std::vector<ResidualState> segment_in;
};

// The chunk's forward, segment by segment; `out` is its output stream. The
// loss as chunk_forward's.
void recompute_forward(RecomputedChunk& r, RecomputeKept& m, const int32_t* tokens, const int32_t* targets,
                       const ResidualState& in, ResidualState& out, double* loss);
// The chunk's backward: each segment's forward again (the first forward's
// bits), then its input and weight gradients at once, since the next
// forward reuses the arena. Arguments as chunk_backward_input's.
void recompute_backward(RecomputedChunk& r, RecomputeKept& m, const int32_t* tokens, const int32_t* targets,
                        float loss_scale, const ResidualState& dout, ResidualState& din);

}  // namespace attnres
