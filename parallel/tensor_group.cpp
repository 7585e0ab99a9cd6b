#include "parallel/tensor_group.h"

namespace attnres {

double ring_allreduce_bytes(size_t floats, int ranks) {
  return 2.0 * double(ranks - 1) / double(ranks) * 4.0 * double(floats);
}

double ring_allgather_bytes(size_t floats_per_rank, int ranks) {
  return double(ranks - 1) * 4.0 * double(floats_per_rank);
}

}  // namespace attnres
