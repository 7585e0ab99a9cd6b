// The communication table printed at the end of a pipelined run: the bytes
// each hop really carried, beside what the standard residual and Full AttnRes
// would need on the same layout (DESIGN §2).
#pragma once
#include <string>
#include <vector>

#include "parallel/partition.h"
#include "runtime/config.h"

namespace attnres {

// measured[c] = bytes per step (forward + backward, one pipeline) on the hop
// into chunk c, for c = 1..C-1 (measured[0] unused).
std::string comm_table(const Config& cfg, const Partition& part, const std::vector<double>& measured);

}  // namespace attnres
