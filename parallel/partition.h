// Pipeline partition: which sublayers each chunk runs (DESIGN §2).
//
// With P pipeline ranks and V virtual stages there are C = P·V chunks; chunk c
// holds sublayers [first, last). Chunk 0 also holds the embedding, chunk C−1
// the output AttnRes site, final norm and LM head. Which rank runs a chunk is
// not decided here: it is the schedule's placement (schedule.h).
//
// Default partition (empty layout): boundaries fall on unit boundaries, where a
// unit is an AttnRes block in attnres mode (so no hop ever carries a partial
// sum) and a transformer block (attention + MLP, i.e. even sublayer indices) in
// standard mode. If there are fewer units than chunks, the units become single
// sublayers (boundaries then cut blocks, and the partial sum crosses). Units
// are assigned to chunks contiguously so that the largest chunk cost is as
// small as possible (exact DP); among those, the partition with the smallest
// sum of squared chunk costs wins, and among those the one whose boundary list
// is lexicographically smallest. Costs come from sublayer_cost / embed_cost /
// head_cost below.
//
// Explicit layout (`parallel.layout`): comma-separated sublayer counts, one per
// chunk in chunk order, e.g. "6,6,6,6". Boundaries may cut blocks.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "models/model_config.h"

namespace attnres {

struct ChunkRange {
  int index = 0;
  int first = 0, last = 0;  // sublayers [first, last)
  bool has_embed = false;
  bool has_head = false;
};

struct Partition {
  int P = 1, V = 1;
  std::vector<ChunkRange> chunks;  // C = P·V, in chunk order
  int num_chunks() const { return static_cast<int>(chunks.size()); }
};

// Throws std::invalid_argument naming `parallel.layout` (or pp / virtual_stages) when the
// layout is malformed or the model has fewer sublayers than chunks.
Partition make_partition(const ModelConfig& cfg, int pp, int virtual_stages,
                         const std::string& layout);

// Training FLOPs per token (forward + backward = 3 × forward) of one piece.
// Attention: 2·4d² for q/k/v/o plus 2·T·d for scores and values under the
// causal mask (each token sees T/2 positions on average: 2·d·T/2 each).
// MLP: 2·3·d·F. AttnRes sites (O(K·d)) and norms are ignored: they are
// memory-bound and small next to the matmuls.
int64_t sublayer_cost(const ModelConfig& cfg, int j);
int64_t embed_cost(const ModelConfig& cfg);  // 3·d: a row gather, tiny
int64_t head_cost(const ModelConfig& cfg);   // 3·2·V·d: the LM head matmul
// Sum of the above over what the chunk holds.
int64_t chunk_cost(const ModelConfig& cfg, const ChunkRange& chunk);

}  // namespace attnres
