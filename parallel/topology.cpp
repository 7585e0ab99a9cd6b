#include "parallel/topology.h"

#include <stdexcept>
#include <string>

namespace attnres {

Coord Topology::coord_of(int r) const {
  return Coord{(r / tp) % dp, r / (dp * tp), r % tp};
}

Topology make_topology(int world_size, int world_rank, int dp, int pp, int tp) {
  if (dp < 1 || pp < 1 || tp < 1)
    throw std::runtime_error("parallel.dp, parallel.pp and parallel.tp must be >= 1, got " +
                             std::to_string(dp) + ", " + std::to_string(pp) + ", " +
                             std::to_string(tp));
  if (world_size != dp * pp * tp)
    throw std::runtime_error("world size " + std::to_string(world_size) +
                             " does not match parallel.dp × parallel.pp × parallel.tp = " +
                             std::to_string(dp) + " × " + std::to_string(pp) + " × " +
                             std::to_string(tp) + " = " + std::to_string(dp * pp * tp));
  if (world_rank < 0 || world_rank >= world_size)
    throw std::runtime_error("world rank " + std::to_string(world_rank) +
                             " is outside [0, " + std::to_string(world_size) + ")");
  Topology t;
  t.world_size = world_size;
  t.world_rank = world_rank;
  t.dp = dp;
  t.pp = pp;
  t.tp = tp;
  t.coord = t.coord_of(world_rank);
  const Coord c = t.coord;
  for (int i = 0; i < pp; ++i) t.pipeline_ranks.push_back(t.world_rank_of({c.dp_idx, i, c.tp_idx}));
  for (int i = 0; i < dp; ++i) t.data_ranks.push_back(t.world_rank_of({i, c.pp_idx, c.tp_idx}));
  for (int i = 0; i < tp; ++i) t.tensor_ranks.push_back(t.world_rank_of({c.dp_idx, c.pp_idx, i}));
  return t;
}

}  // namespace attnres
