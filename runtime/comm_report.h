// The communication table printed at the end of a pipelined run: the bytes
// each hop really carried, beside what the standard residual and Full AttnRes
// would need on the same layout (DESIGN §2).
#pragma once
#include <string>
#include <vector>

#include "parallel/partition.h"
#include "runtime/config.h"

namespace attnres {

// measured[c] = bytes per step (forward + backward, one pipeline, all its tp
// ranks) on the hop into chunk c, for c = 1..C-1 (measured[0] unused).
// tp_measured[w] = bytes world rank w sent in tp collectives in the step
// (empty when tp = 1); `placement` maps chunk -> pipeline rank.
std::string comm_table(const Config& cfg, const Partition& part, const std::vector<int>& placement,
                       const std::vector<double>& measured, const std::vector<double>& tp_measured);

// Bytes per step, forward + backward, of the hop into chunk c under model `m`
// and cfg's caching (one pipeline: without sequence parallelism each tp rank
// sends the whole payload, with it each sends its 1/tp of the token rows).
double hop_step_bytes(const ModelConfig& m, const Partition& part, int c, const Config& cfg);

// Bytes per step of every hop (index c = the hop into chunk c; [0] is 0) if
// this run's layout carried the standard residual, or Full AttnRes (S = 1).
std::vector<double> standard_hop_bytes(const Config& cfg, const Partition& part);
std::vector<double> full_attnres_hop_bytes(const Config& cfg, const Partition& part);

}  // namespace attnres
