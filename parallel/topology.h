// The dp × pp × tp process grid. World ranks are ordered tp fastest, then dp,
// then pp slowest (Megatron's default; pipeline stages are the slowest axis,
// as across nodes):
//   world_rank = pp_idx · (dp · tp) + dp_idx · tp + tp_idx.
// Each rank belongs to three groups, each listed in world ranks ordered by the
// varying index, so position k in a list is group rank k:
//   pipeline: same (dp_idx, tp_idx), pp_idx = 0 … pp−1;
//   data:     same (pp_idx, tp_idx), dp_idx = 0 … dp−1;
//   tensor:   same (pp_idx, dp_idx), tp_idx = 0 … tp−1.
#pragma once
#include <memory>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/tensor_group.h"

namespace attnres {

struct Coord {
  int dp_idx, pp_idx, tp_idx;
  bool operator==(const Coord&) const = default;
};

struct Topology {
  int world_size = 1, world_rank = 0;
  int dp = 1, pp = 1, tp = 1;
  Coord coord{0, 0, 0};  // of world_rank
  std::vector<int> pipeline_ranks, data_ranks, tensor_ranks;

  int world_rank_of(Coord c) const { return c.pp_idx * (dp * tp) + c.dp_idx * tp + c.tp_idx; }
  Coord coord_of(int world_rank) const;
};

// Throws std::runtime_error if world_size != dp·pp·tp (the message names the
// parallel.dp / parallel.pp / parallel.tp keys), if a degree is < 1, or if
// world_rank is not in [0, world_size).
Topology make_topology(int world_size, int world_rank, int dp, int pp, int tp);

// This process's communicators; group ranks follow the Topology lists.
struct Groups {
  std::unique_ptr<Communicator> world, pipeline, data, tensor;
  std::unique_ptr<TensorGroup> tensor_collectives;  // what a chunk calls; null when tp = 1
};

}  // namespace attnres
