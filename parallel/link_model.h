// The α-β model of a network link, used by `attnres plan` and the schedule
// simulator to predict what pipeline hops cost (docs/PARALLEL.md §Network model).
//
// A hop message is one list of tensors (parallel/hop_payload.h) that the
// communicator sends as one MPI message per tensor, all posted together. Their
// latencies overlap, so the model charges the latency α once per hop message
// and the bytes of all its tensors at the bandwidth β:
//
//   t = α + bytes / β
//
// A hop message with no tensors costs nothing (nothing is sent).
#pragma once
#include <cstdint>

namespace attnres {

struct LinkModel {
  double gbps = 0;        // β in Gbit/s (10^9 bit/s); 0 = no link model
  double latency_us = 0;  // α in microseconds
  bool enabled() const { return gbps > 0; }
};

// Seconds one hop message of `bytes` takes on the link. Throws
// std::invalid_argument if gbps <= 0, latency_us < 0 or bytes < 0.
double hop_seconds(const LinkModel& link, int64_t bytes);

}  // namespace attnres
